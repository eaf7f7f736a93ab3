"""Our exception tree: every failure a user can meet, each with one message and one exit code.

Library code raises these; only the CLI layer prints them (in one place) and exits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Documented process exit codes (README "Exit codes")."""

    OK = 0
    SERVER = 1  # the server failed or refused the request
    USAGE = 2  # bad usage or bad local input (preset, file, value)
    UNREACHABLE = 3  # cannot reach the server (refused, DNS, timeout)
    AUTH = 4  # authentication failed
    HANGUP = 129  # SIGHUP (the terminal went away): handled like Ctrl-C
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM (kill, a service manager, a CI timeout): handled like Ctrl-C
    STDOUT_CLOSED = 141  # the reader of stdout went away (`| head -1`), as if killed by SIGPIPE


class SdcliError(Exception):
    """Base of every error sdcli reports to a user: `message` is shown as is, on one line."""

    exit_code: ExitCode = ExitCode.SERVER

    def __init__(
        self, message: str, *, hint: str | None = None, context: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Lines shown under the error line, e.g. a TOML file's offending line and a caret.
        self.context = context

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(SdcliError):
    """A bad flag value or a bad local file: nothing was sent to the server."""

    exit_code = ExitCode.USAGE


class PresetError(UsageError):
    """A preset that cannot be found, parsed or validated; names the file and the key."""


class UnknownPresetError(PresetError):
    """No preset of that name on the search path (so `presets edit` can suggest `presets new`)."""


class NotFoundError(UsageError):
    """A model, sampler or scheduler name that the server does not know (or that is ambiguous)."""

    def __init__(
        self, message: str, *, candidates: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.candidates = candidates or []


class OutputError(UsageError):
    """The output file or directory cannot be written (exists, not writable, disk full)."""


class ConnectionFailed(SdcliError):
    """The server could not be reached at all: refused, DNS failure or a timeout."""

    exit_code = ExitCode.UNREACHABLE


class ServerTimeout(ConnectionFailed):
    """The server accepted the connection but did not answer within the read timeout."""


class AuthError(SdcliError):
    """The server refused our credentials (401/403)."""

    exit_code = ExitCode.AUTH


class ApiError(SdcliError):
    """The server answered with an error status or a body we cannot use."""

    exit_code = ExitCode.SERVER

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.detail = detail


class Interrupted(SdcliError):
    """Ctrl-C, SIGTERM or SIGHUP; whatever the server returned was saved first."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str, *, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = signal_exit_code(signum)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so they take Ctrl-C's path: interrupt the
    server's job, keep what it returned, remove temp files, then exit 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_exit_code(signum: int) -> ExitCode:
    """The shell's convention, 128 + the signal number, for the signals sdcli handles."""
    return ExitCode(128 + signum)


def interruption(exc: BaseException) -> tuple[int, str]:
    """(signal number, " by SIGTERM" or "" for Ctrl-C) of a KeyboardInterrupt or Interrupted."""
    signum = exc.signum if isinstance(exc, (Terminated, Interrupted)) else signal.SIGINT
    return signum, "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"


@contextlib.contextmanager
def interruptions_held() -> Iterator[None]:
    """Ctrl-C (or SIGTERM, SIGHUP) that arrives inside the block is raised as it leaves it, not
    in the middle of it: for short work that must not be left half done (a thread half
    started, a picture's escape sequence). A second one is raised at once: whoever presses
    Ctrl-C again wants out now (a terminal that stopped reading would otherwise hold the
    block for ever). Signals reach the main thread only: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    saved: dict[int, Callable[[int, Any], Any]] = {}

    def hold(signum: int, frame: Any) -> None:
        caught.append((signum, frame))
        if len(caught) > 1:
            saved[signum](signum, frame)

    for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        handler = None if signum is None else signal.getsignal(signum)
        if signum is not None and callable(handler):  # a Python handler: it raises
            saved[signum] = handler
            signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        if len(caught) == 1:  # a second one has been raised already
            signum, frame = caught[0]
            saved[signum](signum, frame)  # KeyboardInterrupt or Terminated, as it would have been
