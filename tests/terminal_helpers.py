"""sdcli on a real pseudo-terminal, seen through a terminal emulator: what a person really sees.

`Terminal` starts the installed sdcli (`python -m sdcli` of this interpreter) with stdin, stdout
and stderr all on one pty of a given size, feeds everything it writes to a pyte screen, and lets
a test wait for screen contents or for the exit: never for a length of time. `StderrOnPty` puts
only stderr on a pty, as when a person watches a run whose stdout is piped into a script.
Timeouts here are safety nets against a hung test, not assertions about speed.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pexpect
import pyte

CURSOR_POSITION_REQUEST = b"\x1b[6n"  # DSR 6: a terminal answers ESC [ row ; col R
BAR_GLYPHS = ("━", "╸", "╺", "─", "%")  # what a progress bar leaves behind when it is not erased


class Terminal:
    """One sdcli process on a pty of `columns` x `rows`, and the screen it has drawn so far."""

    def __init__(
        self,
        *args: str,
        columns: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        cwd: Any = None,
    ) -> None:
        full_env = {**os.environ, "TERM": "xterm-256color", "PYTHONIOENCODING": "utf-8"}
        for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"):
            full_env.pop(name, None)  # the pty's own size and a plain terminal, as a person has
        full_env.update(env or {})
        self.screen = pyte.Screen(columns, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = b""  # every byte written, for failure messages and byte-level assertions
        self.child: pexpect.spawn[bytes] = pexpect.spawn(
            sys.executable,
            ["-m", "sdcli", *args],
            dimensions=(rows, columns),
            env=full_env,
            cwd=None if cwd is None else str(cwd),
        )
        self._eof = False
        self.exit_code: int | None = None

    # --- what the screen shows ---------------------------------------------------------------

    def lines(self) -> list[str]:
        """The screen's rows, trailing blanks removed, empty rows at the bottom dropped."""
        rows = [row.rstrip() for row in self.screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def text(self) -> str:
        return "\n".join(self.lines())

    def dump(self) -> str:
        width = self.screen.columns
        border = "+" + "-" * width + "+"
        body = "\n".join(f"|{row}|" for row in self.screen.display)
        return f"{border}\n{body}\n{border}\nraw: {self.raw[-3000:]!r}"

    # --- waiting -----------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        """Feed the screen whatever the child wrote within `timeout` seconds; notes the EOF."""
        if self._eof:
            return
        try:
            data = self.child.read_nonblocking(65536, timeout)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            self._eof = True
            return
        self.raw += data
        self._stream.feed(data)
        for _ in range(data.count(CURSOR_POSITION_REQUEST)):
            # answer as a terminal does (prompt_toolkit asks where its prompt is drawn)
            cursor = self.screen.cursor
            self.child.send(f"\x1b[{cursor.y + 1};{cursor.x + 1}R".encode())

    def wait_for(self, what: str | Callable[[Terminal], bool], timeout: float = 60) -> None:
        """Until the screen shows `what` (a text, or a test on this terminal); else fail."""
        check: Callable[[Terminal], bool] = (
            (lambda t: what in t.text()) if isinstance(what, str) else what
        )
        deadline = time.monotonic() + timeout
        while not check(self):
            if self._eof:
                raise AssertionError(
                    f"sdcli ended before the screen showed {what!r}:\n{self.dump()}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the screen never showed {what!r}:\n{self.dump()}")
            self._pump(min(left, 1.0))

    def wait_exit(self, timeout: float = 120) -> int:
        """Read to the end, reap the child, return its exit code (128+N for a signal)."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            left = deadline - time.monotonic()
            if left <= 0:
                signals = self._signal_state()
                self.child.kill(9)
                raise AssertionError(f"sdcli did not exit ({signals}):\n{self.dump()}")
            self._pump(min(left, 1.0))
        self.child.wait()
        status = self.child.exitstatus
        self.exit_code = status if status is not None else 128 + (self.child.signalstatus or 0)
        return self.exit_code

    def _signal_state(self) -> str:
        """The child's pending, blocked, ignored and caught signal masks and the pty's foreground
        group, for a failure message: a Ctrl-C that never arrived shows there."""
        try:
            with open(f"/proc/{self.child.pid}/status") as status:
                masks = [line.split() for line in status if line.startswith(("Sig", "ShdPnd"))]
            foreground = os.tcgetpgrp(self.child.child_fd)
        except OSError as exc:
            return f"no signal state: {exc}"
        state = ", ".join(f"{name} {value}" for name, value in masks)
        group = os.getpgid(self.child.pid or 0)
        return f"{state}; pty foreground group {foreground}, the child's {group}"

    # --- typing ------------------------------------------------------------------------------

    def type_line(self, text: str) -> None:
        self.child.sendline(text)

    def ctrl_c(self) -> None:
        self.child.sendintr()

    def ctrl_d(self) -> None:
        self.child.sendeof()

    def send(self, keys: str) -> None:
        """Keys as typed, e.g. "/pre\t" (Tab) or "\x03" (Ctrl-C)."""
        self.child.send(keys.encode())

    def resize(self, columns: int, rows: int) -> None:
        """The window is made `columns` x `rows`: the screen first (pyte cuts rows as xterm
        does), then the pty (the child gets SIGWINCH and finds the new size on its next draw)."""
        self._pump(0)  # what was written at the old size lands at the old size
        self.screen.resize(rows, columns)
        self.child.setwinsize(rows, columns)

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(9)
        self.child.close(force=True)


@dataclass(frozen=True)
class FinalScreen:
    exit_code: int
    lines: list[str]
    raw: bytes
    title: str = ""  # the window title the run left set

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def run_on_terminal(
    *args: str,
    columns: int = 80,
    rows: int = 24,
    env: Mapping[str, str] | None = None,
    cwd: Any = None,
    until: str | None = None,
    then: Callable[[Terminal], None] | None = None,
) -> FinalScreen:
    """Run sdcli on a pty to the end; optionally wait for `until` on screen and call `then`."""
    term = Terminal(*args, columns=columns, rows=rows, env=env, cwd=cwd)
    try:
        if until is not None:
            term.wait_for(until)
        if then is not None:
            then(term)
        code = term.wait_exit()
        return FinalScreen(code, term.lines(), term.raw, term.screen.title)
    finally:
        term.close()


def leftover_bar(lines: list[str]) -> list[str]:
    """Screen rows that still show a piece of a progress bar."""
    return [row for row in lines if any(glyph in row for glyph in BAR_GLYPHS)]


class StderrOnPty:
    """One sdcli process: stderr on a pty of `columns` x `rows`, stdout on a pipe, no stdin.
    Use it as a context manager: the child is killed (by its pid) if a test leaves early."""

    def __init__(self, *args: str, columns: int = 80, rows: int = 24) -> None:
        self.columns, self.rows = columns, rows
        master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
        env.pop("NO_COLOR", None)
        self.child = subprocess.Popen(
            [sys.executable, "-m", "sdcli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            text=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""  # every byte written to the terminal
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the child closed its side
                chunk = b""
            with self._changed:
                self.raw += chunk
                self._changed.notify_all()
                if not chunk:
                    return

    @property
    def text(self) -> str:
        """What reached the terminal, escape codes and all."""
        return self.raw.decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout: float = 20) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: needle in self.text, timeout)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the exit: (exit code, stdout); the terminal has everything by then."""
        out, _ = self.child.communicate(timeout=timeout)
        self._reader.join(10)
        return self.child.returncode, out

    def screen(self) -> str:
        """The final screen's non-blank rows, each with its runs of spaces made one."""
        screen = pyte.Screen(self.columns, self.rows)
        pyte.ByteStream(screen).feed(self.raw.replace(b"\n", b"\r\n"))
        return " ".join(" ".join(line.split()) for line in screen.display if line.strip())

    def __enter__(self) -> StderrOnPty:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        if self.child.stdout is not None:
            self.child.stdout.close()
        self._reader.join(10)
        os.close(self.master)
