"""The chibi preset on SD.Next, as a person sees it on a terminal (a pty read through pyte)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pyte

from sdcli.testing.fake_webui import FakeWebUI


def test_chibi_on_sdnext_runs_and_says_once_what_it_could_not_apply(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="sdnext", step_delay=0.01)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    env.pop("NO_COLOR", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "sdcli", "--url", fake.url, "generate", "-p", "chibi", "a cat",
         "-o", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        text=True,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    reader.join(10)
    os.close(master)
    screen = pyte.Screen(100, 30)
    stream = pyte.ByteStream(screen)
    for chunk in chunks:
        stream.feed(chunk.replace(b"\n", b"\r\n"))
    text = " ".join(" ".join(line.split()) for line in screen.display if line.strip())
    assert child.returncode == 0, text
    (path,) = out.splitlines()
    assert path.endswith(".jpg") and Path(path).is_file()
    # the screen wraps long lines anywhere: compare without spaces
    flat = text.replace(" ", "")
    assert flat.count("SD.Nextcannotapplyscheduler'Karras'perrequest") == 1, text
    assert 'POST/sdapi/v1/options{"schedulers_sigma":"karras"}' in flat, text
    assert "saved1image" in flat and "error" not in text, text
