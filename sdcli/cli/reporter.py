"""Renders the generate use case: paths on stdout as they are saved, the rest on stderr.

Three moods: a live rich progress bar on a terminal, one plain line per batch when stderr is
piped or --no-progress, and nothing but errors and warnings with --quiet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sdcli.cli import render
from sdcli.errors import SdcliError
from sdcli.generate import ProgressSnapshot, SavedImage

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class CliReporter:
    """The plain reporter; `LiveReporter` adds the bar."""

    def __init__(self, *, json_lines: bool, quiet: bool) -> None:
        self.json_lines = json_lines
        self.quiet = quiet
        self._label = ""

    # stdout: results only, flushed one by one so pipelines see each path at once
    def image_saved(self, image: SavedImage) -> None:
        if self.json_lines:
            render.result_json(image.as_json())
        else:
            render.result(str(image.path))

    def batch_started(self, prompt: str, batch: int, batches: int) -> None:
        short = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        self._label = f"{short!r}" + (f" batch {batch}/{batches}" if batches > 1 else "")

    def progress(self, snapshot: ProgressSnapshot) -> None:
        pass

    def batch_finished(self, images: Sequence[SavedImage], seconds: float) -> None:
        if self.quiet:
            return
        seeds = [str(i.seed) for i in images if i.seed is not None]
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(seeds)}"
        n = len(images)
        self.message(
            f"{self._label}: saved {n} image{'s' if n != 1 else ''} · {seed_text} · {seconds:.1f} s"
        )

    def warning(self, message: str) -> None:
        self.message(message, kind="warning")

    def failed(self, prompt: str, error: SdcliError) -> None:
        self.message(f"failed {prompt[:60]!r}: {error}", kind="error")

    def interrupting(self) -> None:
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


class LiveReporter(CliReporter):
    """A rich progress bar on stderr: queued state, step n/N, image i/k, elapsed and ETA."""

    def __init__(self, *, json_lines: bool, quiet: bool) -> None:
        super().__init__(json_lines=json_lines, quiet=quiet)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def _bar(self) -> tuple[Progress, TaskID]:
        if self._progress is None or self._task is None:
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"),
                console=render.err_console(),
                transient=True,
                refresh_per_second=8,
                # stdout carries results only: rich must not capture it into the live display
                redirect_stdout=False,
            )
            self._progress.start()
            label = _markup_safe(self._label)
            self._task = self._progress.add_task(label, total=1.0, detail="", eta="")
        return self._progress, self._task

    def batch_started(self, prompt: str, batch: int, batches: int) -> None:
        super().batch_started(prompt, batch, batches)
        progress, task = self._bar()
        label = _markup_safe(self._label)
        progress.reset(task, total=1.0, description=label, detail="starting", eta="")

    def progress(self, snapshot: ProgressSnapshot) -> None:
        progress, task = self._bar()
        fields: dict[str, Any]
        if snapshot.queued:
            textinfo = _markup_safe(snapshot.textinfo or "")  # the server's words, not markup
            fields = {"detail": f"[yellow]queued[/] {textinfo}".strip(), "eta": ""}
            progress.update(task, completed=0.0, **fields)
            return
        parts = []
        if snapshot.steps:
            parts.append(f"step {snapshot.step}/{snapshot.steps}")
        if snapshot.images > 1:
            parts.append(f"image {snapshot.image}/{snapshot.images}")
        eta = f"ETA {snapshot.eta:.0f}s" if snapshot.eta is not None else ""
        progress.update(task, completed=snapshot.fraction, detail=" · ".join(parts), eta=eta)

    def batch_finished(self, images: Sequence[SavedImage], seconds: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=1.0)
        super().batch_finished(images, seconds)

    def message(self, text: str, *, kind: str = "note") -> None:
        if self._progress is None:
            super().message(text, kind=kind)
            return
        style = {
            "error": "[bold red]sdcli: error:[/] ",
            "warning": "[bold yellow]sdcli: warning:[/] ",
        }
        from rich.markup import escape

        self._progress.console.print(style.get(kind, "") + escape(render.printable(text)))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _markup_safe(text: str) -> str:
    """Text for a rich column that reads markup: shown as is, on one line."""
    from rich.markup import escape

    return escape(render.printable(text))
