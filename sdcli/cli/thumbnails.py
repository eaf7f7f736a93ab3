"""A sink of run events that draws a thumbnail of each saved image (and X/Y/Z grid) on stderr,
under its path.

It comes after the reporter in the fan-out, so the path is on the screen first. The picture is
made from the bytes the run just wrote (`ImageSaved.data`): the file is never read back. Kitty
and iTerm2 are sent the server's own base64 text of the image (`ImageSaved.encoded`), as it
came; kitty on this machine is only told the saved file's path, and reads it itself.
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
        self.by_path = False  # kitty on this machine reads each saved PNG itself
        if mode == "kitty":
            from sdcli.cli.pictures import kitty_reads_files
            from sdcli.config import terminal

            self.by_path = kitty_reads_files(terminal())

    def __call__(self, event: Event) -> None:
        if not isinstance(event, ImageSaved | GridSaved) or not event.data:
            return
        from sdcli.cli.pictures import file_for_kitty, thumbnail
        from sdcli.cli.statusline import terminal_columns

        columns = min(THUMB_COLUMNS, terminal_columns(sys.stderr) - 1)
        encoded = event.encoded if isinstance(event, ImageSaved) else ""
        path = event.image.path if isinstance(event, ImageSaved) else event.path
        pieces = thumbnail(
            event.data,
            self.mode,
            columns=columns,
            rows=THUMB_ROWS,
            encoded=encoded,
            path=file_for_kitty(path) if self.by_path else None,
        )
        if pieces:
            render.picture(pieces)
