"""The live progress bar: rows on stderr, erased before any other line reaches the terminal.

A person at a terminal reads stdout (saved paths) and stderr (the bar, messages) on one screen.
A display that only knows about its own stream leaves its last frame behind and gets the next
path glued to it, so the bar here is a few rows (the bar last; the live preview at their left or
above them), none as wide as the terminal (they cannot wrap), that every writer in `render`
erases first and redraws after. The cursor waits at the start of the last row: the terminal's
echo of a Ctrl-C (`^C`) lands on the display, not past its end where it would wrap onto a row of
its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

BAR_MAX = 40  # cells of the bar itself when there is room
BAR_MIN = 10
SIDE_MIN = 40  # cells of bar and text a picture must leave at its right to sit there
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
    """The rows of the live display, the bar on the last one: text rows above the bar, and a
    picture (the live preview) above them or at their left; `suspended()` lets another line
    pass above them all."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.RLock()  # --debug lines come from the request thread
        self._rows: list[str] = []  # on the screen; the cursor waits at the start of the last
        self._columns = 0  # the terminal's width when they were drawn
        self._shown = False

    def show(
        self,
        text: str,
        above: Sequence[str] = (),
        *,
        picture: Sequence[str] = (),
        picture_columns: int = 0,
    ) -> None:
        """Draw the bar (`text`) under the rows `above`; with `picture` (rows of
        `picture_columns` cells), those rows go at its right, at the bottom of it.

        Only the rows that changed are rewritten (a new step rewrites the bar, not the
        picture); a new number of rows or a resized terminal redraws them all.
        """
        rows = _compose([*above, text], picture, picture_columns)
        with self.lock:
            columns = terminal_columns(self.stream)
            if self._shown and len(rows) == len(self._rows) and columns == self._columns:
                self._update(rows)
            else:
                if self._shown:
                    self._erase()
                self._rows, self._columns = rows, columns
                self._draw()
            self._shown = True
            self.stream.flush()

    def hide(self) -> None:
        """Erase the bar (and any rows above it) and forget them until the next show()."""
        with self.lock:
            if self._shown:
                self._erase()
                self.stream.flush()
            self._shown = False
            self._rows = []

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
                    self._columns = terminal_columns(self.stream)
                    self._draw()
                    self.stream.flush()

    def _erase(self) -> None:
        """From the bar's row: up to the first row above it, and clear to the screen's end.

        Counting rows is right on a terminal that cuts its rows when it is made narrower (xterm,
        tmux); one that rewraps them (VTE, kitty) may keep the top of a frame drawn wider.
        """
        up = len(self._rows) - 1
        self.stream.write("\r" + (f"\x1b[{up}A" if up > 0 else "") + "\x1b[J")

    def _draw(self) -> None:
        """At the start of an empty row: every row, the bar last; the cursor stays on it."""
        self.stream.write("\x1b[K\r\n".join(self._rows) + ERASE_LINE[1:] + "\r")

    def _update(self, rows: list[str]) -> None:
        """Rewrite the rows that changed in place, from the bar's row and back to it."""
        out = []
        last = at = len(rows) - 1
        for i, (new, old) in enumerate(zip(rows, self._rows, strict=True)):
            if new == old:
                continue
            if i != at:
                out.append(f"\x1b[{at - i}A" if i < at else f"\x1b[{i - at}B")
                at = i
            out.append("\r" + new + ERASE_LINE[1:])
        if at != last:
            out.append(f"\x1b[{last - at}B")
        if out:
            self.stream.write("".join(out) + "\r")
        self._rows = rows


PICTURE_GAP = 2  # cells between a picture and the rows at its right


def _compose(text_rows: list[str], picture: Sequence[str], width: int) -> list[str]:
    """The picture at the left, the text rows at its right and at its bottom (the bar stays on
    the last row with or without a picture); without a picture, the text rows alone."""
    if not picture:
        return text_rows
    height = max(len(picture), len(text_rows))
    top = height - len(text_rows)
    rows = []
    for i in range(height):
        left = picture[i] if i < len(picture) else " " * width
        rows.append(left + " " * PICTURE_GAP + text_rows[i - top] if i >= top else left)
    return rows


def beside_room(columns: int, picture_columns: int) -> int:
    """The cells the rows at a picture's right may use (never the terminal's last column); 0
    when fewer than SIDE_MIN: then the picture goes above the rows."""
    room = columns - picture_columns - PICTURE_GAP - 1
    return room if room >= SIDE_MIN else 0


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


def bar_and_tail(tails: list[str], width: int) -> tuple[int, str]:
    """(bar cells, tail) for a row of `width` cells holding no label: the bar at its longest up
    to BAR_MAX with the fullest tail that leaves it BAR_MIN; else the barest tail alone."""
    for tail in tails:
        bar = min(BAR_MAX, width - len(tail) - 1)
        if bar >= BAR_MIN:
            return bar, tail
    return 0, tails[-1][:width]
