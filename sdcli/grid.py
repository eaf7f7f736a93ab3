"""X/Y/Z plots' grid images: each cell's first image side by side, X labels along the top and Y
labels down the left, one grid per prompt and Z value, as the web UI's X/Y/Z plot draws them.

`GridMaker` is a sink of the run's events: it notes where each cell's image was saved and
draws a grid as soon as all of its cells are done (a failed cell stays blank, its label
kept); `close()` draws the grids a run ended before finishing. Cells are read back from the
files just written, so a run never holds a grid's images in memory while it goes on.
"""

from __future__ import annotations

import threading
from dataclasses import field
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.datatypes import mutable
from sdcli.events import Event, GridSaved, ImageSaved, Sink, UnitFailed, UnitFinished, Warned
from sdcli.sweeps import AXIS_NAMES, describe

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

    from sdcli.job import Job, Unit
    from sdcli.sweeps import Axis

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
BLANK = (224, 224, 224)  # a cell whose image is missing


@mutable
class _Group:
    """The cells of one grid: a prompt (and its template), a Z value, an init image."""

    unit: Unit
    images: dict[tuple[int, int], Path] = field(default_factory=dict)
    infotexts: dict[tuple[int, int], str] = field(default_factory=dict)
    done: set[tuple[int, int]] = field(default_factory=set)
    claimed: set[tuple[int, int]] = field(default_factory=set)  # cells a unit was routed to
    made: bool = False


class GridMaker:
    """A sink that saves a labelled grid per prompt and Z value of an X/Y/Z plot, and tells
    `sink` (GridSaved, or Warned when a grid cannot be made)."""

    def __init__(self, job: Job, sink: Sink, *, overwrite: bool = False) -> None:
        self.axes = job.axes
        self.output_dir = job.output_dir
        self.overwrite = overwrite
        self.sink = sink
        self.columns = len(job.axes[0]) if job.axes else 1
        self.rows = len(job.axes[1]) if len(job.axes) > 1 else 1
        self.paths: list[Path] = []
        self._groups: dict[tuple[Any, ...], list[_Group]] = {}
        self._routes: dict[int, tuple[Unit, _Group]] = {}  # a unit being run -> its grid
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        unit = getattr(event, "unit", None)
        if unit is None or not unit.cell or unit.batch != 1:
            return  # a grid shows the first batch of each cell
        if isinstance(event, ImageSaved):
            with self._lock:
                group = self._group(unit)
                place = _place(unit.cell)
                group.images.setdefault(place, event.image.path)
                if event.image.infotext:
                    group.infotexts.setdefault(place, event.image.infotext)
        elif isinstance(event, UnitFinished | UnitFailed):
            with self._lock:
                group = self._group(unit)
                self._routes.pop(id(unit), None)
                group.done.add(_place(unit.cell))
                ready = len(group.done) >= self.columns * self.rows and not group.made
                if ready:
                    group.made = True
            if ready:
                self._make(group)

    def close(self) -> None:
        """Draw the grids the run did not finish (Ctrl-C, a failure): blank cells where no
        image came; a grid without any image is not drawn."""
        with self._lock:
            left = [g for gs in self._groups.values() for g in gs if not g.made and g.images]
            for group in left:
                group.made = True
        for group in left:
            self._make(group)

    def _group(self, unit: Unit) -> _Group:
        """The grid a unit's cell belongs to: that of its prompt, init image and Z value, the
        first one whose cell is still free (two variants may draw the same prompt)."""
        route = self._routes.get(id(unit))
        if route is not None and route[0] is unit:
            return route[1]
        key = (unit.prompt, unit.template, unit.negative_prompt, unit.init, unit.cell[2:])
        place = _place(unit.cell)
        groups = self._groups.setdefault(key, [])
        group = next((g for g in groups if place not in g.claimed), None)
        if group is None:
            group = _Group(unit)
            groups.append(group)
        group.claimed.add(place)
        self._routes[id(unit)] = (unit, group)
        return group

    def _make(self, group: _Group) -> None:
        from sdcli.errors import SdcliError

        try:
            data = grid_png(group, self.axes, self.columns, self.rows)
            path = self._save(data)
        except (OSError, ValueError, SdcliError) as exc:
            self.sink(Warned(f"could not save the X/Y/Z grid: {exc}", group.unit))
            return
        self.paths.append(path)
        cells = self.columns * self.rows
        self.sink(
            GridSaved(
                path,
                group.unit.prompt,
                group.unit.template,
                _axes_text(self.axes, group.unit),
                cells,
                cells - len(group.images),
                group.unit,
                data=data,
            )
        )

    def _save(self, data: bytes) -> Path:
        from sdcli.output import write_new_file

        stamp = datetime.now()
        name = f"{stamp:%Y%m%d-%H%M%S}-grid-{len(self.paths) + 1:04d}.png"
        return write_new_file(self.output_dir, name, data, overwrite=self.overwrite)


def _place(cell: tuple[int, ...]) -> tuple[int, int]:
    return (cell[0], cell[1] if len(cell) > 1 else 0)


def _axes_text(axes: tuple[Axis, ...], unit: Unit) -> str:
    """The axes, and the Z value this grid is for."""
    text = describe(axes[:2])
    if len(axes) > 2 and len(unit.cell) > 2:
        z = axes[2]
        text += f"; {AXIS_NAMES[2]}: {z.label} {z.texts[unit.cell[2]]}"
    return text


def grid_parameters(group: _Group, axes: tuple[Axis, ...]) -> str:
    """The first cell's parameters (as the web UI's grid keeps them), with the axes added as
    one more setting: `X/Y/Z plot: "X: Steps 20, 30; Y: CFG Scale 5, 7"`."""
    from sdcli.infotext import Infotext, format_infotext, parse_infotext

    if group.infotexts:
        info = parse_infotext(group.infotexts[min(group.infotexts)])
    else:
        info = Infotext(prompt=group.unit.prompt)
    info.params["X/Y/Z plot"] = _axes_text(axes, group.unit)
    return format_infotext(info)


def grid_png(group: _Group, axes: tuple[Axis, ...], columns: int, rows: int) -> bytes:
    """The grid as PNG bytes, with a `parameters` text chunk that says what it shows."""
    from PIL import Image, PngImagePlugin

    tiles: dict[tuple[int, int], Image.Image] = {}
    for place, path in group.images.items():
        with Image.open(path) as image:
            tiles[place] = image.convert("RGB")
    x_labels = [f"{axes[0].label}: {t}" for t in axes[0].texts] if axes else [""]
    y_labels = [f"{axes[1].label}: {t}" for t in axes[1].texts] if len(axes) > 1 else []
    title = ""
    if len(axes) > 2 and len(group.unit.cell) > 2:
        title = f"{axes[2].label}: {axes[2].texts[group.unit.cell[2]]}"
    grid = draw_grid(tiles, columns, rows, x_labels, y_labels, title)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", grid_parameters(group, axes))
    out = BytesIO()
    grid.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def draw_grid(
    tiles: dict[tuple[int, int], Image.Image],
    columns: int,
    rows: int,
    x_labels: list[str],
    y_labels: list[str],
    title: str = "",
) -> Image.Image:
    """Cells of the largest tile's size (smaller ones centred, missing ones grey), a band of
    X labels on top and, with a Y axis, a column of Y labels on the left; a Z value's title
    above them all."""
    from PIL import Image, ImageDraw

    width = max((t.width for t in tiles.values()), default=64)
    height = max((t.height for t in tiles.values()), default=64)
    size = max(10, (width + height) // 25)  # the web UI's label size for its cells
    font = _font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    spacing = size // 2
    left = width * 3 // 4 if y_labels else 0
    top_lines = [_wrap(measure, text, font, width - spacing) for text in x_labels]
    side_lines = [_wrap(measure, text, font, left - spacing) for text in y_labels]
    top = max(_block_height(measure, lines, font, spacing) for lines in top_lines) + 2 * spacing
    title_lines = _wrap(measure, title, font, left + columns * width - spacing) if title else []
    above = _block_height(measure, title_lines, font, spacing) + spacing if title else 0
    top += above
    grid = Image.new("RGB", (left + columns * width, top + rows * height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for row in range(rows):
        for column in range(columns):
            x, y = left + column * width, top + row * height
            tile = tiles.get((column, row))
            if tile is None:
                draw.rectangle((x, y, x + width - 1, y + height - 1), fill=BLANK)
            else:
                grid.paste(tile, (x + (width - tile.width) // 2, y + (height - tile.height) // 2))
    if title_lines:
        _draw_block(draw, title_lines, font, spacing, grid.width / 2, (above + spacing) / 2)
    for column, lines in enumerate(top_lines):
        middle = above + (top - above) / 2
        _draw_block(draw, lines, font, spacing, left + column * width + width / 2, middle)
    for row, lines in enumerate(side_lines):
        _draw_block(draw, lines, font, spacing, left / 2, top + row * height + height / 2)
    return grid


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font, always there (scalable with FreeType, else its small bitmap one)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow before 10.1, or no FreeType
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, room: float) -> list[str]:
    """Words on lines no wider than `room` (a single long word gets a line of its own)."""
    lines = [""]
    for word in text.split():
        line = f"{lines[-1]} {word}".strip()
        if draw.textlength(line, font=font) <= room or not lines[-1]:
            lines[-1] = line
        else:
            lines.append(word)
    return lines


def _line_height(draw: ImageDraw.ImageDraw, font: Any) -> int:
    box = draw.textbbox((0, 0), "Hg", font=font)
    return int(box[3] - box[1])


def _block_height(draw: ImageDraw.ImageDraw, lines: list[str], font: Any, spacing: int) -> int:
    return len(lines) * _line_height(draw, font) + (len(lines) - 1) * spacing


def _draw_block(
    draw: ImageDraw.ImageDraw, lines: list[str], font: Any, spacing: int, x: float, y: float
) -> None:
    """`lines` centred on (x, y)."""
    step = _line_height(draw, font) + spacing
    first = y - _block_height(draw, lines, font, spacing) / 2
    for n, line in enumerate(lines):
        box = draw.textbbox((0, 0), line, font=font)
        left = x - (box[2] - box[0]) / 2 - box[0]
        draw.text((left, first + n * step - box[1]), line, font=font, fill=TEXT)
