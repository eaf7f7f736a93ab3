"""The live rows of a run over several servers, on a terminal: one per server (what it is doing:
its prompt and step, idle, gone) and, at the bottom, one for the whole run (done/total, images
per minute, ETA). They are the status line's rows (sdcli.cli.statusline): every other line
passes above them, and they are gone at the end. A run on one server keeps its one bar.

The live preview, when drawn, is one picture at the rows' left: one server's, marked on its
row, kept until that server's request ends (previews of two servers taking turns would swap the
picture every second); then another working server's has its place. Only the server drawn is
asked for previews (the others' would be fetched for nobody), but for the first that comes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sdcli.cli import render
from sdcli.cli.reporter import CliReporter, LivePreview
from sdcli.cli.statusline import (
    bar_cells,
    fit_label,
    layout,
)
from sdcli.datatypes import mutable
from sdcli.events import (
    Event,
    ImageSaved,
    Interrupting,
    Progressed,
    Queued,
    Retrying,
    ServerDropped,
    UnitFailed,
    UnitFinished,
    UnitStarted,
)
from sdcli.job import Unit


@mutable
class _Row:
    name: str
    state: str = "idle"  # idle, starting, queued, working, retrying, stopping, gone
    unit: Unit | None = None
    fraction: float = 0.0
    detail: str = ""


class ServersReporter(CliReporter):
    """CliReporter's lines, with the rows drawn under them (see the module doc).

    `servers`: (URL, name) of each server, in the order of the command line.
    """

    def __init__(self, *, json_lines: bool, quiet: bool, servers: Sequence[tuple[str, str]]):
        super().__init__(json_lines=json_lines, quiet=quiet, names=dict(servers))
        self._status = render.status_line()
        self._color = render.use_color()
        self._rows = {url: _Row(render.printable(name)) for url, name in servers}
        self._width = max(len(row.name) for row in self._rows.values())
        self._started = time.monotonic()
        self._done = 0  # units finished or failed
        self._images = 0
        self._planned = 0
        self._complete = False
        self._preview = LivePreview()
        self._previewed: str | None = None  # the URL of the server whose preview is drawn
        self._latest: dict[str, bytes] = {}  # each working server's newest preview, if it sent one

    def wants_preview(self, server: str) -> bool:
        """Whether `server`'s preview would be drawn now (asked from the request threads)."""
        previewed = self._previewed
        return previewed is None or previewed == server

    def __call__(self, event: Event) -> None:
        if self._track(event):
            self._draw()  # the picture goes before the lines of its end pass above the rows
        super().__call__(event)
        self._draw()

    def _track(self, event: Event) -> bool:
        """Note what `event` changes in the rows; True when the preview drawn is dropped."""
        if isinstance(event, Queued):
            self._planned, self._complete = event.units, event.complete
            return False
        server = getattr(event, "server", "")
        row = self._rows.get(server)
        if row is None:
            return False
        dropped = False
        if isinstance(event, Progressed) and event.snapshot.preview is not None:
            self._latest.pop(server, None)
            self._latest[server] = event.snapshot.preview  # the newest last
            if self._previewed in (None, server):
                self._previewed = server
                self._preview.replace(event.snapshot.preview)
        elif isinstance(event, ImageSaved | UnitFinished | UnitFailed | ServerDropped):
            self._latest.pop(server, None)  # its request is over: so is its preview
            if server == self._previewed:
                self._next_preview()
                dropped = True
        self._track_row(row, event)
        return dropped

    def _next_preview(self) -> None:
        """The drawn preview's request ended: the newest preview of another server takes its
        place (one that came before the other's request ended is kept for this), else none."""
        if self._latest:
            self._previewed, data = next(reversed(self._latest.items()))
            self._preview.replace(data)
        else:
            self._previewed = None
            self._preview.replace(None)

    def _track_row(self, row: _Row, event: Event) -> None:
        if isinstance(event, ImageSaved):
            self._images += 1
        elif isinstance(event, UnitStarted):
            row.state, row.unit, row.fraction, row.detail = "starting", event.unit, 0.0, ""
        elif isinstance(event, Progressed) and row.state not in ("gone", "stopping"):
            snap = event.snapshot
            row.state = "queued" if snap.queued else "working"
            row.fraction = snap.fraction
            parts = [f"step {snap.step}/{snap.steps}"] if snap.steps and not snap.queued else []
            if snap.images > 1 and not snap.queued:
                parts.append(f"image {snap.image}/{snap.images}")
            row.detail = " · ".join(parts)
        elif isinstance(event, (UnitFinished, UnitFailed)):
            self._done += 1
            self.server = event.server
            if row.state != "gone":
                row.state, row.unit, row.detail = "idle", None, ""
        elif isinstance(event, ServerDropped):
            row.state, row.unit, row.detail = "gone", None, render.printable(str(event.error))
        elif isinstance(event, Interrupting):
            row.state = "stopping"
        elif isinstance(event, Retrying):
            row.state, row.detail = "retrying", f"retry {event.attempt} in {event.delay:g} s"

    # --- drawing ---------------------------------------------------------------------------

    def _draw(self) -> None:
        picture, room, columns = self._preview.place(self._status.stream, spare=len(self._rows) + 1)
        width = room + 1 if room else columns  # the rows' functions keep the last column free
        marks = {url: "  " for url in self._rows} if picture else {}
        if picture and self._previewed in marks:
            marks[self._previewed] = "◂ " if room else "▴ "
        rows = [self._server_row(row, width, marks.get(url, "")) for url, row in self._rows.items()]
        run = _cut(self._run_row(), width)
        self._preview.show(self._status, run, rows, picture, room)

    def _server_row(self, row: _Row, columns: int, mark: str = "") -> str:
        """`mark`: "◂ " on the row of the server whose preview is at the left, blanks on the
        others ("▴ " when the picture is above the rows)."""
        head = mark + row.name.ljust(self._width) + "  "
        room = columns - len(head)
        if row.unit is None or row.state == "gone":
            text = row.state + (f": {row.detail}" if row.detail else "")
            return _cut(head + text, columns)
        unit = row.unit
        suffix = f"batch {unit.batch}/{unit.batches}" if unit.batches > 1 else ""
        if row.state in ("working",) and row.detail:
            label, cells, tail = layout(unit.prompt, suffix, [row.detail], room)
            bar = bar_cells(row.fraction, min(cells, 20), color=self._color) if cells else ""
            return head + " ".join(p for p in (label, bar, tail) if p)
        tail = row.detail if row.state == "retrying" else row.state
        label = fit_label(unit.prompt, suffix, max(room - len(tail) - 2, 8))
        return _cut(f"{head}{label}  {tail}", columns)

    def _run_row(self) -> str:
        elapsed = time.monotonic() - self._started
        total = f"{self._planned}" + ("" if self._complete else "+")
        parts = [f"{self._done}/{total} done", f"{self._images} image{'s' * (self._images != 1)}"]
        if self._images and elapsed > 0:
            parts.append(f"{self._images / elapsed * 60:.1f}/min")
        if self._complete and self._done and self._planned > self._done:
            left = elapsed / self._done * (self._planned - self._done)
            parts.append(f"ETA {_clock(left)}")
        gone = sum(1 for row in self._rows.values() if row.state == "gone")
        servers = len(self._rows) - gone
        gone_text = f" ({gone} gone)" if gone else ""
        parts.append(f"{servers} server{'s' * (servers != 1)}{gone_text}")
        return " · ".join(parts)

    def close(self) -> None:
        render.end_status()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _cut(text: str, columns: int) -> str:
    """One row that never wraps (the rows are erased by counting them)."""
    room = max(columns - 1, 1)
    return text if len(text) <= room else text[: room - 1] + "…"
