"""The terminal side, on a real pseudo-terminal: the live bar on stderr, paths still on stdout."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

from sdcli.testing.fake_webui import FakeWebUI


class PtyReader:
    """Collects what a child writes to a pseudo-terminal; lets a test wait for some text."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.text = ""
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the child closed its side
                chunk = b""
            with self.changed:
                if not chunk:
                    self.changed.notify_all()
                    return
                self.text += chunk.decode("utf-8", "replace")
                self.changed.notify_all()

    def wait_for(self, needle: str, timeout: float = 20) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: needle in self.text, timeout)


def test_progress_bar_draws_on_a_terminal_and_stdout_stays_clean(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(5)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sdcli",
            "--url",
            fake_webui.url,
            "generate",
            "-p",
            "chibi",
            "a cat",
            "-o",
            str(tmp_path),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        text=True,
    )
    os.close(slave)
    reader = PtyReader(master)
    try:
        assert reader.wait_for("step 5/27")  # the bar shows our job's step, live
        fake_webui.resume()
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    reader.thread.join(10)
    os.close(master)
    assert child.returncode == 0, reader.text
    paths = out.splitlines()
    assert len(paths) == 1 and Path(paths[0]).is_file(), (out, reader.text)
    assert "\x1b[" in reader.text  # decorated, because stderr is a terminal
    assert "saved 1 image" in reader.text
    assert "\x1b[" not in out  # the results never are
    assert paths[0] not in reader.text  # and never leak into the live display on stderr
