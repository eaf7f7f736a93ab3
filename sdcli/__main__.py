"""Entry point for the `sdcli` console script and `python -m sdcli`, and the start-up tricks
that belong to the process rather than to any command: closed standard streams, a reader that
goes away, the collector's passes over start-up's objects."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any, TextIO, cast


class StreamClosed(BaseException):
    """stdout or stderr lost its reader (`| head -1`). A BaseException, so no `except Exception`
    of a command takes it for a failure, and typer's own broken-pipe handling (exit 1) never
    sees it: it ends here, as exit 141, the status of a Unix tool killed by SIGPIPE."""


class _Guarded:
    """A standard stream whose writes raise StreamClosed once nobody reads it."""

    def __init__(self, stream: TextIO, *, closed: bool = False) -> None:
        self._stream = stream
        self._closed = closed  # started with the stream closed (`>&-`)

    def write(self, text: str) -> int:
        if self._closed:
            raise StreamClosed
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise StreamClosed from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise StreamClosed from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _guard_streams() -> None:
    """Started with stdin or stderr closed (`<&-`, `2>&-`), Python leaves them None: reading
    nothing and saying nothing is what such a caller asked for, a crash is not. With stdout
    closed (`>&-`) results have nowhere to go: the first one ends the run (141)."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    closed = sys.stdout is None
    if closed:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    sys.stdout = cast(TextIO, _Guarded(sys.stdout, closed=closed))
    sys.stderr = cast(TextIO, _Guarded(sys.stderr))


def _silence() -> None:
    """Point stdout and stderr at /dev/null, so the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def main() -> None:
    """Run the CLI; `--version` alone answers before typer is even imported (loops pay start-up)."""
    _guard_streams()
    try:
        _run()
    except StreamClosed:
        _silence()
        sys.exit(141)  # errors.ExitCode.STDOUT_CLOSED, without importing it
    finally:
        gc.freeze()  # nothing left to collect for: teardown skips its passes over every object


def _run() -> None:
    if sys.argv[1:] == ["--version"]:
        from sdcli import __version__

        sys.stdout.write(f"sdcli {__version__}\n")
        sys.stdout.flush()
        return
    # Start-up and exit are paid on every call in a shell loop (bench/RESULTS.md). The collector
    # would scan the ~30k objects that importing typer creates, all still in use, several times
    # over, and again in the interpreter's teardown: ~70 ms of a ~450 ms one-image run here.
    # Freezing them keeps it on for the work itself, where cycles may hold large buffers.
    gc.disable()
    from sdcli.cli.app import run

    gc.freeze()
    gc.enable()
    run()


if __name__ == "__main__":
    main()
