"""All terminal output: results on stdout, everything for humans on stderr.

Rich is imported only when a table or a progress bar is really drawn on a terminal.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_err_console: Console | None = None
stdout_closed = False  # set by __main__ when the process started with stdout closed


def stderr_is_tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def use_color() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stderr_is_tty()


def err_console() -> Console:
    """The one rich Console, bound to stderr; it drops styling when stderr is not a terminal."""
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False, soft_wrap=False)
    return _err_console


def wants_table() -> bool:
    """A person reads both streams at a terminal: draw tables (on stderr). Else plain lines."""
    return bool(sys.stdout and sys.stdout.isatty()) and stderr_is_tty()


def result_text(text: str) -> None:
    """A multi-line result (e.g. a TOML document) on stdout, as is."""
    result(text.rstrip("\n"))


def result(line: str) -> None:
    """One result line on stdout, flushed so `while read` loops see it at once."""
    if stdout_closed or sys.stdout is None:  # started with `>&-`: nobody can read results
        raise BrokenPipeError(errno.EPIPE, "stdout is closed")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def result_json(obj: Any) -> None:
    result(json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")))


def _styled(text: str, code: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if use_color() else text


def error(message: str) -> None:
    sys.stderr.write(f"{_styled('sdcli: error:', '1;31')} {message}\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    sys.stderr.write(f"{_styled('sdcli: warning:', '1;33')} {message}\n")
    sys.stderr.flush()


def note(message: str) -> None:
    """A short line for humans (not printed with --quiet by callers)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table on stderr for a person at a terminal; tab-separated lines on stdout for a pipe.

    The data are the same either way: decoration follows the TTY, never content.
    """
    if wants_table():
        from rich.table import Table
        from rich.text import Text

        t = Table(title=title, show_edge=False, header_style="bold")
        for col in columns:
            t.add_column(col, overflow="fold")  # long titles wrap, never lose characters
        for row in rows:
            t.add_row(*(Text(cell) for cell in row))  # cells are data, not markup: "[hash]"
        err_console().print(t)
    else:
        for row in rows:
            result("\t".join(row))
