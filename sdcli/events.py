"""What a run tells its front ends: events, and the sinks that receive them.

A sink is any callable taking an event (`Sink`); `fanout` hands each event to several (the
terminal, a history file, a picture preview...). Every event names the unit it is about (None
when it concerns the whole run) and the server (its base URL), so a queue over several servers
can tell them apart. Sinks run on the thread of the Runner that emits: they must be quick and
must not raise (an exception from a sink ends the run like any other error).

A sink may also have a `prepare()` method: the Runner calls it (`prepare_sink`) once a run,
while the run's first request is on its way, for set-up that does not depend on the answer
(imports, starting a writer). It is a head start only: a sink works the same when it is never
called, and it must not raise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from sdcli.datatypes import frozen
from sdcli.errors import SdcliError
from sdcli.job import Unit
from sdcli.save import SavedImage


@frozen
class ProgressSnapshot:
    """What the progress bar shows; `queued` while another client's job holds the GPU."""

    queued: bool
    fraction: float
    step: int = 0
    steps: int = 0
    image: int = 0  # 1-based job number within the request (web UI batch count)
    images: int = 0
    eta: float | None = None
    elapsed: float = 0.0
    textinfo: str | None = None
    # A new live preview (the server's PNG or JPEG bytes), only when asked for and changed.
    preview: bytes | None = field(default=None, repr=False, compare=False)


@frozen
class UnitStarted:
    """A request is about to be sent; `body` is that request (what a history records)."""

    unit: Unit
    server: str
    body: Mapping[str, Any] = field(default_factory=dict)


@frozen
class Progressed:
    """The server's progress on the unit (only when the Runner polls: `progress=True`)."""

    unit: Unit
    server: str
    snapshot: ProgressSnapshot


@frozen
class ImageSaved:
    """One image is on disk (emitted after every image of the answer is written); `data` is
    what was written, so a picture of it needs no second read of the file."""

    unit: Unit
    server: str
    image: SavedImage
    data: bytes = field(default=b"", repr=False, compare=False)
    # the server's base64 text of the image (its pixels; `data` may add a text chunk)
    encoded: str = field(default="", repr=False, compare=False)


@frozen
class UnitFinished:
    """Every image of the unit is saved."""

    unit: Unit
    server: str
    images: Sequence[SavedImage]
    seconds: float


@frozen
class UnitFailed:
    """The unit failed and --keep-going goes on with the next prompt."""

    unit: Unit
    server: str
    error: SdcliError


@frozen
class Interrupting:
    """Ctrl-C (or SIGTERM): the server was asked to stop; the partial images are awaited."""

    unit: Unit
    server: str


@frozen
class Retrying:
    """A transient failure; the same request goes again after `delay` seconds."""

    unit: Unit | None
    server: str
    error: SdcliError
    attempt: int
    delay: float


@frozen
class Warned:
    """Something the user should know; the run goes on."""

    message: str
    unit: Unit | None = None
    server: str = ""


@frozen
class GridSaved:
    """An X/Y/Z plot's labelled grid image is on disk (one per prompt and Z value); `cells`
    the cells it has, `missing` those left blank (a failed or unfinished cell)."""

    path: Path
    prompt: str
    template: str | None
    axes: str  # what the axes are, as the grid's parameters text says
    cells: int
    missing: int = 0
    unit: Unit | None = None
    server: str = ""
    data: bytes = field(default=b"", repr=False, compare=False)  # the PNG written


@frozen
class ServerDropped:
    """A server failed after its retries and left a run over several servers; its `unit` (if
    one was running) goes back to the queue for another server. `left`: servers still in it."""

    server: str
    error: SdcliError
    unit: Unit | None = None
    left: int = 0


@frozen
class Queued:
    """How many units a run over several servers knows of so far (prompts are read as the
    servers need them); `complete` once every prompt has been read."""

    units: int
    complete: bool


Event = (
    UnitStarted
    | Progressed
    | ImageSaved
    | UnitFinished
    | UnitFailed
    | Interrupting
    | Retrying
    | Warned
    | GridSaved
    | ServerDropped
    | Queued
)
Sink = Callable[[Event], None]


def prepare_sink(sink: Sink) -> None:
    """Let `sink` get ready while a request is on its way (its `prepare()`, if it has one)."""
    hook: Callable[[], None] | None = getattr(sink, "prepare", None)
    if hook is not None:
        hook()


class _Fanout:
    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = tuple(sinks)

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            sink(event)

    def prepare(self) -> None:
        for sink in self.sinks:
            prepare_sink(sink)


def fanout(*sinks: Sink) -> Sink:
    """One sink that hands each event to every one of `sinks`, in order (and `prepare` to
    each)."""
    return _Fanout(sinks)


class _Serialised:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.held = threading.RLock()

    def __call__(self, event: Event) -> None:
        with self.held:
            self.sink(event)

    def prepare(self) -> None:
        with self.held:
            prepare_sink(self.sink)


def serialised(sink: Sink) -> Sink:
    """`sink` for Runners on several threads (a run over several servers): one event at a time,
    so a reporter's lines and a history's rows never interleave."""
    return _Serialised(sink)


def ignore(event: Event) -> None:
    """The sink that drops everything."""
