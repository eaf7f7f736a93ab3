"""The chibi preset on SD.Next, as a person sees it on a terminal (a pty read through pyte)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sdcli.testing.fake_webui import FakeWebUI

from terminal_helpers import StderrOnPty


def test_chibi_on_sdnext_runs_and_says_once_what_it_could_not_apply(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="sdnext", step_delay=0.01)
    args = ("--url", fake.url, "generate", "-p", "chibi", "a cat", "-o", str(tmp_path))
    with StderrOnPty(*args, columns=100, rows=30) as run:
        code, out = run.finish()
    text = run.screen()
    assert code == 0, text
    (path,) = out.splitlines()
    assert path.endswith(".jpg") and Path(path).is_file()
    # the screen wraps long lines anywhere: compare without spaces
    flat = text.replace(" ", "")
    assert flat.count("SD.Nextcannotapplyscheduler'Karras'perrequest") == 1, text
    assert 'POST/sdapi/v1/options{"schedulers_sigma":"karras"}' in flat, text
    assert "saved1image" in flat and "error" not in text, text
