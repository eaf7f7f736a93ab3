"""A sink of run events that draws a thumbnail of each saved image (and X/Y/Z grid) on stderr,
under its path.

It comes after the reporter in the fan-out, so the path is on the screen first. The picture is
made from the bytes the run just wrote (`ImageSaved.data`): the file is never read back.
"""

from __future__ import annotations

import sys

from sdcli.cli import render
from sdcli.cli.pictures import Mode
from sdcli.events import Event, GridSaved, ImageSaved

THUMB_COLUMNS = 40  # at most, and never wider than the terminal
THUMB_ROWS = 10


class Thumbnails:
    """Draws in `mode` (never "none": the front end adds this sink only when pictures show)."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode

    def __call__(self, event: Event) -> None:
        if not isinstance(event, ImageSaved | GridSaved) or not event.data:
            return
        from sdcli.cli.pictures import thumbnail
        from sdcli.cli.statusline import terminal_columns

        columns = min(THUMB_COLUMNS, terminal_columns(sys.stderr) - 1)
        text = thumbnail(event.data, self.mode, columns=columns, rows=THUMB_ROWS)
        if text:
            render.picture(text)
