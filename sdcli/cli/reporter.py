"""Renders the generate use case: paths on stdout as they are saved, the rest on stderr.

Three moods: a live progress bar on a terminal, one plain line per batch when stderr is
piped or --no-progress, and nothing but errors and warnings with --quiet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sdcli.cli import render
from sdcli.errors import SdcliError
from sdcli.events import (
    Event,
    GridSaved,
    ImageSaved,
    Interrupting,
    Progressed,
    ProgressSnapshot,
    Retrying,
    UnitFailed,
    UnitFinished,
    UnitStarted,
    Warned,
)
from sdcli.job import Unit
from sdcli.save import SavedImage

if TYPE_CHECKING:
    from typing import TextIO

    from sdcli.cli.pictures import Tile
    from sdcli.cli.statusline import StatusLine


class CliReporter:
    """The plain reporter, a sink of run events (sdcli.events); `LiveReporter` adds the bar.

    `names`: each server's name by URL, for a run over several: each `saved` line names its
    server (stdout stays paths; `--json` has `server`).
    """

    def __init__(
        self, *, json_lines: bool, quiet: bool, names: Mapping[str, str] | None = None
    ) -> None:
        self.json_lines = json_lines
        self.quiet = quiet
        self._label = ""
        self.server = ""  # the URL of the server that made the image being reported
        self._interrupting = False
        self._names = {url: render.printable(name) for url, name in (names or {}).items()}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progressed):
            self.progress(event.snapshot)
        elif isinstance(event, ImageSaved):
            self.server = event.server
            self.image_saved(event.image, event.unit)
        elif isinstance(event, GridSaved):
            self.grid_saved(event)
        elif isinstance(event, UnitStarted):
            self.batch_started(event.unit.prompt, event.unit.batch, event.unit.batches)
        elif isinstance(event, UnitFinished):
            self.server = event.server
            # the unit's own label: on several servers, other units start in between
            self._label = self._label_of(event.unit.prompt, event.unit.batch, event.unit.batches)
            self.batch_finished(event.images, event.seconds)
        elif isinstance(event, Warned):
            self.warning(event.message)
        elif isinstance(event, UnitFailed):
            self.failed(event.unit.prompt, event.error)
        elif isinstance(event, Interrupting):
            self.interrupting()
        elif isinstance(event, Retrying):
            self.retrying(event.error, event.attempt, event.delay)

    # stdout: results only, flushed one by one so pipelines see each path at once
    def image_saved(self, image: SavedImage, unit: Unit | None = None) -> None:
        if self.json_lines:
            fields = image.as_json()
            if unit is not None and (unit.template is not None or unit.cell):
                from sdcli.sweeps import unit_fields

                fields.update(unit_fields(unit))
            render.result_json({**fields, "server": self.server})
        else:
            render.result(str(image.path))

    def grid_saved(self, grid: GridSaved) -> None:
        """A grid is a result too: its path on stdout (`"grid": true` in JSON)."""
        if self.json_lines:
            render.result_json(
                {
                    "path": str(grid.path),
                    "grid": True,
                    "prompt": grid.prompt,
                    "template": grid.template,
                    "axes": grid.axes,
                    "cells": grid.cells,
                    "missing": grid.missing,
                }
            )
        else:
            render.result(str(grid.path))
        if grid.missing and not self.quiet:
            self.message(f"{grid.path}: {grid.missing} of {grid.cells} cells left blank")

    def batch_started(self, prompt: str, batch: int, batches: int) -> None:
        self._label = self._label_of(prompt, batch, batches)

    @staticmethod
    def _label_of(prompt: str, batch: int, batches: int) -> str:
        short = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        return f"{short!r}" + (f" batch {batch}/{batches}" if batches > 1 else "")

    def progress(self, snapshot: ProgressSnapshot) -> None:
        pass

    def batch_finished(self, images: Sequence[SavedImage], seconds: float) -> None:
        if self.quiet:
            return
        self.message(f"{self._label}: {self._saved_text(images, seconds)}{self._by()}")

    def _by(self) -> str:
        """` · gpu2`: which server made the images, in a run over several."""
        name = self._names.get(self.server) if len(self._names) > 1 else None
        return f" · {name}" if name else ""

    @staticmethod
    def _saved_text(images: Sequence[SavedImage], seconds: float) -> str:
        seeds = [str(i.seed) for i in images if i.seed is not None]
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(seeds)}"
        n = len(images)
        return f"saved {n} image{'s' if n != 1 else ''} · {seed_text} · {seconds:.1f} s"

    def warning(self, message: str) -> None:
        self.message(message, kind="warning")

    def failed(self, prompt: str, error: SdcliError) -> None:
        self.message(f"failed {prompt[:60]!r}: {error}", kind="error")

    def interrupting(self) -> None:
        if self._interrupting:
            return  # once a run, however many servers are asked to stop
        self._interrupting = True
        self.message("interrupting: waiting for the images made so far (Ctrl-C again to quit now)")

    def retrying(self, error: SdcliError, attempt: int, delay: float) -> None:
        self.message(f"{error}; retry {attempt} in {delay:g} s", kind="warning")

    def message(self, text: str, *, kind: str = "note") -> None:
        if kind == "error":
            render.error(text)
        elif kind == "warning":
            render.warn(text)
        else:
            render.note(text)

    def close(self) -> None:
        pass


PREVIEW_COLUMNS = 32  # the live preview's size at most, in cells
PREVIEW_ROWS = 10


class LivePreview:
    """The newest live preview, drawn in half-blocks: text, erased with the bar like any other
    row (a placed Kitty or Sixel image would stay behind). Its rows are made again when the
    terminal's size changes; a preview that cannot be decoded keeps the last one."""

    def __init__(self) -> None:
        self._tile: Tile | None = None
        self._size = (0, 0)  # the terminal's (columns, lines) the rows were made for
        self.rows: list[str] = []
        self.columns = 0  # the width of those rows, in cells

    def replace(self, data: bytes | None) -> None:
        """A new preview (None: no preview, as at the start of a request)."""
        from sdcli.cli.pictures import Tile

        if data is None:
            self._tile = None
        else:
            try:
                self._tile = Tile(data)
            except ValueError:
                return
        self._size = (0, 0)
        self.rows, self.columns = [], 0

    def fit(self, columns: int, lines: int, *, spare: int = 1) -> list[str]:
        """The rows for a terminal of `columns` x `lines` that must keep `spare` rows for text:
        none when it is too small for a picture."""
        if self._tile is None or (columns, lines) == self._size:
            return self.rows
        from sdcli.cli.pictures import fit_cells, halfblock_lines

        self._size = (columns, lines)
        self.rows, self.columns = [], 0
        room = min(PREVIEW_ROWS, lines - 3 - spare)
        if room < 2:
            return self.rows
        tile = self._tile
        try:
            c, r = fit_cells(tile.width, tile.height, min(PREVIEW_COLUMNS, columns - 1), room)
            self.rows, self.columns = halfblock_lines(tile.pixels(c, r), c, r), c
        except ValueError:
            self._tile = None
        return self.rows

    def place(self, stream: TextIO, *, spare: int = 1) -> tuple[list[str], int, int]:
        """The picture's rows on `stream`'s terminal, the cells left at their right for the text
        rows (0: too narrow, the picture goes above them) and the terminal's columns."""
        from sdcli.cli.statusline import beside_room, terminal_columns, terminal_lines

        columns = terminal_columns(stream)
        picture = self.fit(columns, terminal_lines(stream), spare=spare)
        room = beside_room(columns, self.columns) if picture else 0
        return picture, room, columns

    def show(
        self, status: StatusLine, text: str, rows: list[str], picture: list[str], room: int
    ) -> None:
        """The bar (`text`) under `rows`, with `picture` (from `place`) at their left when there
        is `room`, else above them."""
        if room:
            status.show(text, rows, picture=picture, picture_columns=self.columns)
        else:
            status.show(text, [*picture, *rows])


class LiveReporter(CliReporter):
    """The live bar on stderr (queued state, step n/N, image i/k, elapsed, ETA), one row that
    every other line passes above and that is gone once the images are saved. With a live
    preview, the picture at its left and the prompt over the bar (above them when the terminal
    is too narrow for both)."""

    def __init__(self, *, json_lines: bool, quiet: bool) -> None:
        super().__init__(json_lines=json_lines, quiet=quiet)
        self._status = render.status_line()
        self._color = render.use_color()
        self._prompt = ""
        self._suffix = ""
        self._preview = LivePreview()

    def batch_started(self, prompt: str, batch: int, batches: int) -> None:
        super().batch_started(prompt, batch, batches)
        self._prompt = prompt
        self._suffix = f"batch {batch}/{batches}" if batches > 1 else ""
        self._preview.replace(None)
        self._draw(0.0, "starting", "", 0.0)

    def progress(self, snapshot: ProgressSnapshot) -> None:
        if snapshot.preview is not None:
            self._preview.replace(snapshot.preview)
        if snapshot.queued:
            detail = f"queued {render.printable(snapshot.textinfo or '')}".strip()
            self._draw(0.0, detail, "", snapshot.elapsed)
            return
        parts = []
        if snapshot.steps:
            parts.append(f"step {snapshot.step}/{snapshot.steps}")
        if snapshot.images > 1:
            parts.append(f"image {snapshot.image}/{snapshot.images}")
        eta = f"ETA {snapshot.eta:.0f}s" if snapshot.eta is not None else ""
        self._draw(snapshot.fraction, " · ".join(parts), eta, snapshot.elapsed)

    def _draw(self, fraction: float, detail: str, eta: str, elapsed: float) -> None:
        from sdcli.cli.statusline import bar_and_tail, bar_cells, fit_label, layout

        minutes, seconds = divmod(int(elapsed), 60)
        clock = f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"
        percent = f"{fraction * 100:3.0f}%"
        tails = [
            " ".join(p for p in (percent, detail, clock, eta) if p),
            " ".join(p for p in (percent, detail, eta) if p),
            " ".join(p for p in (detail, eta) if p),
        ]
        picture, room, columns = self._preview.place(self._status.stream)
        if room:  # the prompt on a row of its own, the bar under it: both at the picture's right
            cells, tail = bar_and_tail(tails, room)
            bar = bar_cells(fraction, cells, color=self._color) if cells else ""
            label = fit_label(self._prompt, self._suffix, room)
            row = " ".join(p for p in (bar, tail) if p)
            self._preview.show(self._status, row, [label], picture, room)
            return
        label, cells, tail = layout(self._prompt, self._suffix, tails, columns)
        bar = bar_cells(fraction, cells, color=self._color) if cells else ""
        self._preview.show(
            self._status, " ".join(p for p in (label, bar, tail) if p), [], picture, 0
        )

    def image_saved(self, image: SavedImage, unit: Unit | None = None) -> None:
        self._status.hide()  # the request is over: its bar must not come back between paths
        super().image_saved(image, unit)

    def grid_saved(self, grid: GridSaved) -> None:
        self._status.hide()
        super().grid_saved(grid)

    def batch_finished(self, images: Sequence[SavedImage], seconds: float) -> None:
        """One row: the prompt label shrinks so the summary does not wrap."""
        from sdcli.cli.statusline import LABEL_MIN, fit_label, terminal_columns

        self._status.hide()
        if self.quiet:
            return
        text = self._saved_text(images, seconds)
        room = terminal_columns(self._status.stream) - 1 - len(text) - 2
        label = fit_label(self._prompt, self._suffix, max(room, LABEL_MIN))
        self.message(f"{label}: {text}")

    def failed(self, prompt: str, error: SdcliError) -> None:
        self._status.hide()
        super().failed(prompt, error)

    def close(self) -> None:
        render.end_status()
