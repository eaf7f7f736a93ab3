"""The live progress bar: one line on stderr, erased before any other line reaches the terminal.

A person at a terminal reads stdout (saved paths) and stderr (the bar, messages) on one screen.
A display that only knows about its own stream leaves its last frame behind and gets the next
path glued to it, so the bar here is a single row, never as wide as the terminal (it cannot
wrap), that every writer in `render` erases first and redraws after. The cursor waits at the
start of that row: the terminal's echo of a Ctrl-C (`^C`) lands on the bar, not past its end
where it would wrap onto a row of its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

BAR_MAX = 40  # cells of the bar itself when there is room
BAR_MIN = 10
LABEL_MIN = 12  # the prompt label gives way first, down to this…
PROMPT_MIN = 8  # …or to this much of the prompt, with its batch n/N
ERASE_LINE = "\r\x1b[K"


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal `stream` is on, asked again each time (windows get resized)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    if columns <= 0:
        from sdcli.config import columns_hint

        columns = columns_hint() or 0
    return columns if columns > 0 else 80


def terminal_lines(stream: TextIO) -> int:
    """The height of the terminal `stream` is on (24 when it cannot be told)."""
    try:
        lines = os.get_terminal_size(stream.fileno()).lines
    except (OSError, ValueError, AttributeError):
        lines = 0
    return lines if lines > 0 else 24


class StatusLine:
    """The row the bar lives on, and the rows of a picture above it (the live preview);
    `suspended()` lets another line pass above them all."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.RLock()  # --debug lines come from the request thread
        self._text = ""
        self._above: list[str] = []  # drawn above the bar; the cursor waits on the bar's row
        self._shown = False

    def show(self, text: str, above: Sequence[str] | None = None) -> None:
        """Draw the bar; `above` replaces the rows over it (None keeps them as they are)."""
        with self.lock:
            if above is not None and list(above) != self._above:
                self._erase()
                self._above = list(above)
                self._text = text
                self._draw()
            else:  # only the bar's row changes: rewrite it, not the picture
                self._text = text
                self.stream.write(ERASE_LINE + text + ERASE_LINE[1:] + "\r")
            self._shown = True
            self.stream.flush()

    def hide(self) -> None:
        """Erase the bar (and any rows above it) and forget them until the next show()."""
        with self.lock:
            if self._shown:
                self._erase()
                self.stream.flush()
            self._shown = False
            self._text = ""
            self._above = []

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Erase the bar for the caller's write, then draw it again below what was written."""
        with self.lock:
            shown = self._shown
            if shown:
                self._erase()
                self.stream.flush()
            try:
                yield
            finally:
                if shown:
                    self._draw()
                    self.stream.flush()

    def _erase(self) -> None:
        """From the bar's row: up to the first row above it, and clear to the screen's end."""
        up = len(self._above)
        self.stream.write("\r" + (f"\x1b[{up}A" if up else "") + "\x1b[J")

    def _draw(self) -> None:
        """At the start of an empty row: the rows above, then the bar; the cursor stays on it."""
        rows = "".join(line + "\x1b[K\r\n" for line in self._above)
        self.stream.write(rows + self._text + ERASE_LINE[1:] + "\r")


def fit_label(prompt: str, suffix: str, width: int) -> str:
    """`'prompt' suffix`, the prompt cut with an ellipsis so the whole is at most `width`."""
    full = _label(prompt, suffix)
    if len(full) <= width:
        return full
    for keep in range(len(prompt) - 1, -1, -1):
        text = _label(prompt[:keep].rstrip() + "…", suffix)
        if len(text) <= width:
            return text
    return full[: max(width, 0)]


def _label(prompt: str, suffix: str) -> str:
    return f"{prompt!r}" + (f" {suffix}" if suffix else "")


def layout(prompt: str, suffix: str, tails: list[str], columns: int) -> tuple[str, int, str]:
    """(label, bar cells, tail) fitting in `columns` - 1 cells, so the row can never wrap.

    `tails` are the right-hand texts from the fullest to the barest (the last one holds what
    must always show: step n/N and the ETA). The label shrinks first, down to LABEL_MIN, then
    the bar down to BAR_MIN, then the next tail is tried; at the very end the bar goes.
    """
    room_total = columns - 1
    full = len(_label(prompt, suffix))
    shortest = len(_label(prompt[:PROMPT_MIN] + "…", suffix))
    for tail in tails:
        room = room_total - len(tail) - 1  # label, space, bar, space, tail
        label_width = min(full, max(LABEL_MIN, shortest, room - 1 - BAR_MAX))
        bar = min(BAR_MAX, room - 1 - label_width)
        if bar >= BAR_MIN:
            return fit_label(prompt, suffix, label_width), bar, tail
    tail = tails[-1][:room_total]
    room = room_total - len(tail) - 1
    return (fit_label(prompt, suffix, room) if room >= LABEL_MIN else ""), 0, tail


def bar_cells(fraction: float, cells: int, *, color: bool) -> str:
    """The bar's glyphs: thick for done (a half cell at the edge), grey or thin for the rest."""
    fraction = max(0.0, min(1.0, fraction))
    halves = int(fraction * cells * 2)
    full, half = divmod(halves, 2)
    done = "━" * full + ("╸" if half else "")
    rest = cells - len(done)
    if not color:
        return done + "─" * rest
    return f"\x1b[38;5;197m{done}\x1b[0m\x1b[38;5;237m{'━' * rest}\x1b[0m"
