"""All terminal output: results on stdout, everything for humans on stderr.

Rich is imported only when a table or a progress bar is really drawn on a terminal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TextIO

    from rich.console import Console

    from sdcli.cli.statusline import StatusLine
    from sdcli.errors import SdcliError

_err_console: Console | None = None
_status: StatusLine | None = None  # the live bar on stderr, while one is up


# Control characters (C0, DEL, C1) and the bidirectional overrides that can reorder a line:
# outside text shows them as escapes. Backslashes stay as they are (paths, regexes).
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNPRINTABLE: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    **{ord(c): f"\\u{ord(c):04x}" for c in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"},
    **{c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)},
    **{ord(k): v for k, v in _NAMED.items()},
}


# What json.dumps leaves raw that a terminal may obey (DEL, C1 such as U+009B "CSI", bidi
# overrides): written as JSON's own \u escapes, so the decoded values stay exactly the same.
_JSON_UNSAFE = {c: f"\\u{c:04x}" for c in _UNPRINTABLE if c >= 0x7F}


def printable(text: str) -> str:
    """Text from a server or a file as one line a terminal only shows: an escape sequence in an
    error message or a PNG's metadata must not set the title, clear the screen or forge a line."""
    return text.translate(_UNPRINTABLE)


def stderr_is_tty() -> bool:
    from sdcli.config import dumb_terminal

    return sys.stderr.isatty() and not dumb_terminal()


def use_color() -> bool:
    from sdcli.config import color_choice

    choice = color_choice()
    return stderr_is_tty() if choice is None else choice


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
    _write(sys.stdout, line + "\n")


def result_json(obj: Any) -> None:
    text = json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
    result(text.translate(_JSON_UNSAFE))


def _styled(text: str, code: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if use_color() else text


def error(message: str) -> None:
    _write(sys.stderr, f"{_styled('sdcli: error:', '1;31')} {printable(message)}\n")


def failure(exc: SdcliError) -> None:
    """An error line, then the lines that show where it is (each made printable on its own)."""
    error(str(exc))
    for line in exc.context:
        note(line)


def warn(message: str) -> None:
    _write(sys.stderr, f"{_styled('sdcli: warning:', '1;33')} {printable(message)}\n")


def note(message: str) -> None:
    """A short line for humans (not printed with --quiet by callers)."""
    _write(sys.stderr, printable(message) + "\n")


def picture(pieces: Sequence[str | bytes | memoryview]) -> None:
    """A picture (sdcli.cli.pictures) on stderr, above a live bar if one is up: its text through
    the text stream, its image payloads (megabytes of base64) straight to the binary buffer,
    never decoded into text and encoded back.

    Ctrl-C (SIGTERM, SIGHUP) waits for the picture's end: a Kitty or iTerm2 escape sequence cut
    short would make the terminal read the error line and the shell's prompt as image data.
    Ending it early instead would not do: a Kitty image whose last chunk never comes is still
    being received (the next image's chunks join it) and cut base64 is no image. The wait is
    the time the terminal takes to read one picture."""
    from sdcli.errors import interruptions_held

    status = _status
    with interruptions_held():
        if status is None:
            _write_picture(sys.stderr, pieces)
            return
        with status.suspended():
            _write_picture(sys.stderr, pieces)


def _write_picture(stream: TextIO, pieces: Sequence[str | bytes | memoryview]) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is None or all(isinstance(piece, str) for piece in pieces):
        # half-blocks are text; a stream with no buffer (a test's) takes the payload as text
        stream.write("".join(p if isinstance(p, str) else str(p, "ascii") for p in pieces))
        stream.flush()
        return
    encoding, errors = stream.encoding or "utf-8", stream.errors or "strict"
    chunks = [p.encode(encoding, errors) if isinstance(p, str) else p for p in pieces]
    stream.flush()  # what the text layer holds (rich's output, a note) goes first
    try:
        fd = buffer.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: not a file
        fd = -1
    if fd < 0 or not hasattr(os, "writev"):
        for chunk in chunks:
            buffer.write(chunk)
        buffer.flush()
        return
    write_all(fd, chunks)


IOV_MAX = 1024  # pieces a writev takes at once (Linux's and macOS's limit)


def write_all(fd: int, pieces: Sequence[bytes | memoryview]) -> None:
    """Every piece to `fd` in order, with no copy and few system calls: writev, IOV_MAX pieces
    at a time, resumed inside a piece after a short write (a signal, a full pipe)."""
    views = [memoryview(piece) for piece in pieces if len(piece)]
    i = 0
    while i < len(views):
        written = os.writev(fd, views[i : i + IOV_MAX])
        while written:
            size = len(views[i])
            if written < size:
                views[i] = views[i][written:]
                break
            written -= size
            i += 1


def _write(stream: TextIO, text: str) -> None:
    """Write and flush; with a live bar up, the line goes above it (both share one screen)."""
    status = _status
    if status is None:
        stream.write(text)
        stream.flush()
        return
    with status.suspended():
        stream.write(text)
        stream.flush()


def status_line() -> StatusLine:
    """The live bar's row on stderr; every line written through this module passes above it."""
    global _status
    if _status is None:
        from sdcli.cli.statusline import StatusLine

        _status = StatusLine(sys.stderr)
    return _status


def end_status() -> None:
    """Erase the bar for good: what follows is written as if it had never been there."""
    global _status
    if _status is not None:
        _status.hide()
        _status = None


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    cut: str | None = None,
) -> None:
    """A rich table on stderr for a person at a terminal; tab-separated lines on stdout for a pipe.

    Cells wrap, never losing a character; only the column named `cut` (long free text such as
    a prompt) is cut to the terminal's width with "…", so each row stays one line.

    The data are the same either way: decoration follows the TTY, never content (the pipe
    keeps empty columns, so a script's field numbers never move).
    """
    if wants_table():
        from rich.table import Table
        from rich.text import Text

        console = err_console()
        if title:  # its own line: a table title is wrapped to the table's width, mid-name
            console.print(Text(printable(title), style="bold"), soft_wrap=True)
        # A column with nothing in it (no aliases, no notes, no model loaded) is only noise.
        keep = [i for i in range(len(columns)) if not rows or any(_cell(r, i) for r in rows)]
        t = Table(show_edge=False, header_style="bold")
        widths = _cut_widths(console.width, columns, rows, keep, cut) if cut else {}
        for i in keep:
            # with a `cut` column, that one gives way first; the others wrap only when the
            # terminal is too narrow for them and a few characters of it
            no_wrap = cut is not None and columns[i] != cut and not widths
            t.add_column(columns[i], overflow="fold", width=widths.get(i), no_wrap=no_wrap)
        for row in rows:
            # cells are data, not markup ("[hash]"), and never terminal commands
            t.add_row(*(_text(Text, printable(_cell(row, i)), columns[i] == cut) for i in keep))
        console.print(t)
    else:
        for row in rows:
            result("\t".join(printable(cell) for cell in row))


MIN_CUT_WIDTH = 8  # what is left of a cut column (a prompt) on a narrow terminal


def _cut_widths(
    width: int, columns: Sequence[str], rows: Sequence[Sequence[str]], keep: list[int], cut: str
) -> dict[int, int]:
    """Each kept column's width when `cut` is the column to cut: the others keep their natural
    width while they fit beside MIN_CUT_WIDTH characters of it; past that the widest of them
    give way (and wrap). Rich's own shrinking would drop whole columns instead."""
    from rich.cells import cell_len

    natural = {
        i: max([cell_len(columns[i]), *(cell_len(printable(_cell(r, i))) for r in rows)])
        for i in keep
    }
    room = width - 3 * len(keep) + 1  # one space each side of a cell, a rule between columns
    if cut not in columns or columns.index(cut) not in natural:
        return {}
    c = columns.index(cut)
    others = {i: w for i, w in natural.items() if i != c}
    budget = max(room - MIN_CUT_WIDTH, 4 * len(others))
    while sum(others.values()) > budget:
        widest = max(others, key=lambda i: others[i])
        if others[widest] <= 4:
            break
        others[widest] -= 1
    return {**others, c: max(1, min(natural[c], room - sum(others.values())))}


def _text(cls: Any, text: str, cut: bool) -> Any:
    return cls(text, no_wrap=True, overflow="ellipsis") if cut else cls(text)


def _cell(row: Sequence[str], index: int) -> str:
    return row[index] if index < len(row) else ""
