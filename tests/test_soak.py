"""Soak: one `sdcli generate -` process, hundreds of prompts, faults injected at random.

Every prompt must end exactly one way: its image saved once, or reported as failed; the counts
must add up, and the process must not leak file descriptors or threads as it goes. The RNG is
seeded, so a failure reproduces. SDCLI_SOAK_COUNT runs it longer (e.g. 5000 in a nightly job).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdcli.testing.fake_webui import FakeWebUI

TXT2IMG = "/sdapi/v1/txt2img"
COUNT = int(os.environ.get("SDCLI_SOAK_COUNT", "200"))
WARM_UP = 5  # prompts before counting descriptors: lazy imports and the keep-alive connection
DETAIL = {"detail": [{"loc": ["body", "steps"], "msg": "bad", "type": "type_error"}]}

# (outcome, weight, failure armed on the next txt2img or None, requests it takes with --retries 1)
SCENARIOS: list[tuple[str, int, dict[str, Any] | None, int]] = [
    ("png", 24, None, 1),
    ("jpg", 1, {"mode": "not_png"}, 1),  # a JPEG is still an image: kept as .jpg
    ("failed", 1, {"status": 500}, 1),
    ("failed", 1, {"status": 422, "body": DETAIL}, 1),  # a 4xx is never retried
    ("failed", 1, {"mode": "malformed"}, 1),
    ("failed", 1, {"mode": "bad_image"}, 1),
    ("failed", 1, {"mode": "empty_images"}, 1),
    ("png", 1, {"status": 503}, 2),  # transient, and the one retry succeeds
    ("failed", 1, {"status": 503, "times": 2}, 2),
    ("png", 1, {"mode": "html"}, 2),  # a proxy's 502 page
    ("failed", 1, {"mode": "html", "times": 2}, 2),
    ("png", 1, {"mode": "close"}, 2),  # connection dropped
    ("failed", 1, {"mode": "close", "times": 2}, 2),
]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.soak
def test_soak_every_prompt_is_saved_once_or_reported(
    make_fake_webui: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake: FakeWebUI = make_fake_webui()
    out = tmp_path / "out"
    rng = random.Random(20261125)
    monkeypatch.setenv("SDCLI_RETRY_BACKOFF", "0")
    args = ["--url", fake.url, "generate", "--keep-going", "--retries", "1", "--json"]
    args += ["--steps", "1", "-W", "64", "-H", "64", "--name", "{prompt_slug}", "-", "-o", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdcli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    expected: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    attempts = retries_seen = 0
    fds_before = threads_before = 0
    try:
        for i in range(COUNT):
            prompt = f"p{i}"
            outcome, _, arm, tries = rng.choices(SCENARIOS, [s[1] for s in SCENARIOS])[0]
            if arm is not None:
                fake.fail(TXT2IMG, **arm)
            expected[prompt] = outcome
            attempts += tries
            proc.stdin.write(prompt + "\n")
            proc.stdin.flush()
            # The next prompt is only sent once this one's verdict is on stderr: no sleeps.
            while True:
                line = proc.stderr.readline()
                assert line, f"sdcli stopped after {prompt!r}"
                assert "Traceback" not in line
                if line.startswith(f"'{prompt}': saved 1 image"):
                    verdicts[prompt] = "saved"
                    rows.append(json.loads(proc.stdout.readline()))
                    break
                if line.startswith(f"sdcli: error: failed '{prompt}': "):
                    verdicts[prompt] = "failed"
                    break
                assert "; retry 1 in 0 s" in line, line
                retries_seen += 1
            if i == WARM_UP:
                fds_before, threads_before = open_fds(proc.pid), threads(proc.pid)
        fds_after, threads_after = open_fds(proc.pid), threads(proc.pid)
        stdout, stderr = proc.communicate(timeout=120)  # closes stdin: the run ends
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    failed = {p for p, o in expected.items() if o == "failed"}
    saved = {p for p, o in expected.items() if o != "failed"}
    assert 0 < len(failed) < COUNT // 2  # the mix really exercised both paths
    # Each prompt ended exactly one way, the expected one.
    assert verdicts == {p: "failed" if p in failed else "saved" for p in expected}
    # Each saved image: printed once, on disk once, its own prompt, nothing else on disk.
    assert stdout == ""  # every JSON line was consumed as its prompt finished
    assert [row["prompt"] for row in rows] == sorted(saved, key=lambda p: int(p[1:]))
    ext = {"png": ".png", "jpg": ".jpg"}
    on_disk = sorted(path.name for path in out.iterdir())
    assert on_disk == sorted(f"{p}{ext[expected[p]]}" for p in saved)
    assert sorted(Path(row["path"]).name for row in rows) == on_disk
    # The counts add up, the retries happened where they should, and the summary says so.
    assert len(fake.requests_to(TXT2IMG)) == attempts
    assert retries_seen == attempts - COUNT
    assert proc.returncode == 1
    done, left, error = stderr.splitlines()
    assert done.startswith(f"done: {COUNT} prompts · {len(saved)} images · {len(failed)} failed")
    assert left.startswith(f"run 1: {len(saved)} of {COUNT} units done; to do the rest: ")
    assert error == f"sdcli: error: {len(failed)} prompts failed, {len(saved)} image(s) saved"
    # Nothing piles up over hundreds of requests (a keep-alive socket may come and go).
    assert fds_after <= fds_before + 2, (fds_before, fds_after)
    assert threads_after <= threads_before + 1, (threads_before, threads_after)
