"""Runs of many prompts (issue 10, item 10): the closing summary, Ctrl-C marks and counts over
the whole run, and a full disk that names the seeds it cost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli

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


def test_ctrl_c_marks_the_partial_image_and_counts_the_whole_run(
    fake_webui: FakeWebUI, tmp_path: Path
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
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # a safety net, not a timing assertion
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    [second] = [json.loads(line) for line in out.splitlines()]
    assert first["interrupted"] is False
    assert second["interrupted"] is True and second["prompt"] == "a dog"
    errors = [line for line in err.splitlines() if line.startswith("sdcli: error:")]
    assert errors == [
        "sdcli: error: interrupted; kept 2 image(s) the server had made "
        "(1 from the interrupted job)"
    ]
    assert "done: 2 prompts · 2 images · 0 failed" in err


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
