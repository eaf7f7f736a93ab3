"""Runs of many prompts (issue 10, item 10): the closing summary (which says how the run
ended), Ctrl-C marks and counts over the whole run, and a full disk that names the seeds it
cost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import error_line, run_sdcli
from terminal_helpers import Terminal

TINY = ("--steps", "2", "-W", "64", "-H", "64")
SDCLI = (sys.executable, "-m", "sdcli")


def test_a_run_of_many_prompts_ends_with_a_summary_on_stderr(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = run_sdcli(
        "--url", fake_webui.url, "generate", *TINY, "-b", "2", "-", "-o", str(tmp_path),
        input="a cat\na dog\n# a comment\na bird\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 6  # stdout: paths only, as ever
    last = r.stderr.splitlines()[-1]
    assert last.startswith("done: 3 prompts · 6 images · 0 failed · ")
    assert last.endswith(" s")
    assert "Ctrl-D" not in r.stderr  # the typing hint is for a person at a terminal only
    one = run_sdcli("--url", fake_webui.url, "generate", *TINY, "a cat", "-o", str(tmp_path))
    quiet = run_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "-", "-o", str(tmp_path),
        input="a cat\na dog\n",
    )  # fmt: skip
    assert (one.returncode, quiet.returncode) == (0, 0)
    assert "done:" not in one.stderr  # one prompt: its own line says it all
    assert quiet.stderr == ""


def test_the_summary_counts_failures_with_keep_going(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n", encoding="utf-8")
    fake_webui.fail("/sdapi/v1/txt2img", status=500, times=1)
    r = run_sdcli(
        "--url", fake_webui.url, "generate", *TINY, "--prompts-file", str(prompts),
        "--keep-going", "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert r.returncode == 1
    assert "done: 2 prompts · 1 image · 1 failed · " in r.stderr
    assert "sdcli: error: 1 prompt failed, 1 image(s) saved" in r.stderr


@pytest.mark.parametrize(
    ("signum", "code", "ended"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "interrupted by SIGTERM")],
)
def test_ctrl_c_marks_the_partial_image_and_counts_the_whole_run(
    fake_webui: FakeWebUI, tmp_path: Path, signum: int, code: int, ended: str
) -> None:
    proc = subprocess.Popen(
        [*SDCLI, "--url", fake_webui.url, "generate", *TINY, "--steps", "20", "--json", "-",
         "-o", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        encoding="utf-8", env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("a cat\n")
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # the first prompt is done and saved
        fake_webui.pause_at_step(3)
        proc.stdin.write("a dog\n")
        proc.stdin.flush()
        assert fake_webui.wait_paused(30)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)  # a safety net, not a timing assertion
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    [second] = [json.loads(line) for line in out.splitlines()]  # stdout: results only
    assert first["interrupted"] is False
    assert second["interrupted"] is True and second["prompt"] == "a dog"
    errors = [line for line in err.splitlines() if line.startswith("sdcli: error:")]
    by = "" if signum == signal.SIGINT else " by SIGTERM"
    assert errors == [
        f"sdcli: error: interrupted{by}; kept 2 image(s) the server had made "
        "(1 from the interrupted job)"
    ]
    # the summary says how the run ended: it was not done
    assert f"\n{ended}: 2 prompts · 2 images · 0 failed · " in err
    assert "done:" not in err


def test_ctrl_c_at_a_terminal_ends_with_interrupted_not_done(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\na bird\n", encoding="utf-8")
    fake_webui.pause_at_step(2, after_jobs=1)  # the second prompt's job waits at step 2
    term = Terminal(
        "--url", fake_webui.url, "generate", "--steps", "4", "-W", "64", "-H", "64",
        "--no-show", "--no-journal", "-o", "out", "--prompts-file", str(prompts),
        columns=100, rows=24, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert fake_webui.wait_paused(30), term.dump()
        term.wait_for(lambda t: any(row.startswith("'a dog'") for row in t.lines()))
        term.ctrl_c()
        assert term.wait_exit() == 130, term.dump()
        final = term.lines()
    finally:
        term.close()
    assert re.fullmatch(r"interrupted: 2 prompts · 2 images · 0 failed · [\d.]+ s", final[-2])
    assert final[-1] == (
        "sdcli: error: interrupted; kept 2 image(s) the server had made (1 from the "
        "interrupted job)"
    ), term.dump()
    assert not any(row.startswith("done:") for row in final), term.dump()
    assert len([row for row in final if row.startswith("out/")]) == 2


def test_a_run_an_error_stopped_says_stopped(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n", encoding="utf-8")
    fake_webui.fail("/sdapi/v1/txt2img", status=500, times=1)
    r = run_sdcli(
        "--url", fake_webui.url, "generate", *TINY, "--prompts-file", str(prompts),
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    [summary] = [line for line in r.stderr.splitlines() if line.startswith("stopped:")]
    assert re.fullmatch(r"stopped: 1 prompt · 0 images · [\d.]+ s", summary), r.stderr
    assert error_line(r.stderr).startswith("sdcli: error: the server failed (500)")
    assert "done:" not in r.stderr


def test_a_full_disk_names_the_seeds_it_cost(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    # RLIMIT_FSIZE (ulimit -f, KiB) fails write() with EFBIG past 1 KiB, as a full disk would
    # with ENOSPC (both end up in the same place); SIGXFSZ is ignored so the write just fails.
    script = 'trap "" XFSZ; ulimit -f 1; exec "$@"'
    r = subprocess.run(
        ["bash", "-c", script, "bash", *SDCLI, "--url", fake_webui.url, "generate", *TINY,
         "-b", "3", "--seed", "100", "a cat", "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("sdcli: error:")]
    assert len(errors) == 1
    assert "file too large to write" in errors[0]
    assert "not saved: seeds 100, 101, 102" in errors[0]
    assert r.stdout == ""
