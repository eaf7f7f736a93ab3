"""The terminal side, on a real pseudo-terminal: the live bar on stderr, paths still on stdout."""

from __future__ import annotations

from pathlib import Path

from sdcli.testing.fake_webui import FakeWebUI

from terminal_helpers import StderrOnPty


def test_progress_bar_draws_on_a_terminal_and_stdout_stays_clean(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(5)
    args = ("--url", fake_webui.url, "generate", "-p", "chibi", "a cat", "-o", str(tmp_path))
    with StderrOnPty(*args, columns=120) as run:
        assert run.wait_for("step 5/27")  # the bar shows our job's step, live
        fake_webui.resume()
        code, out = run.finish()
    assert code == 0, run.text
    paths = out.splitlines()
    assert len(paths) == 1 and Path(paths[0]).is_file(), (out, run.text)
    assert "\x1b[" in run.text  # decorated, because stderr is a terminal
    assert "saved 1 image" in run.text
    assert "\x1b[" not in out  # the results never are
    assert paths[0] not in run.text  # and never leak into the live display on stderr
