"""Polling the server's progress for the request a Runner is waiting on."""

from __future__ import annotations

import time
from collections.abc import Callable

from sdcli.catalog import Catalog
from sdcli.client import WebUIClient
from sdcli.errors import SdcliError
from sdcli.events import ProgressSnapshot

POLL_INTERVAL = 0.3  # seconds: at most ~3 progress requests a second


class Poller:
    """Asks how far our task is; knows whether the server can tell about one task."""

    def __init__(
        self, client: WebUIClient, catalog: Catalog, emit: Callable[[ProgressSnapshot], None]
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.emit = emit
        self._internal_progress: bool | None = None  # None: not probed yet
        self._running_task: str | None = None  # ours, seen active: it holds the queue until done

    def start(self) -> None:
        """Before a request: SD.Next has no force_task_id, its /internal/progress would never
        know our task."""
        if self._internal_progress is None and self.catalog.is_sdnext():
            self._internal_progress = False

    def poll(self, task_id: str, started: float) -> None:
        """One progress request; any failure here is cosmetic and ignored."""
        elapsed = time.monotonic() - started
        try:
            # Once our task runs, the global job stays ours until our answer comes: one request a
            # poll from then on, not two (issue 7: at most ~3 progress requests a second).
            if self._internal_progress is not False and self._running_task != task_id:
                task = self.client.task_progress(task_id)
                if task is None:
                    self._internal_progress = False
                else:
                    self._internal_progress = True
                    if task.active or task.completed:
                        self._running_task = task_id
                    else:
                        self.emit(
                            ProgressSnapshot(
                                queued=True,
                                fraction=0.0,
                                elapsed=elapsed,
                                textinfo=task.textinfo,
                            )
                        )
                        return
            # Our task is running (or the server cannot tell): the global job is ours.
            p = self.client.progress(skip_current_image=True)
        except SdcliError:
            return
        if p.idle:
            return
        self.emit(
            ProgressSnapshot(
                queued=False,
                fraction=max(0.0, min(1.0, p.progress)),
                step=p.sampling_step,
                steps=p.sampling_steps,
                image=p.job_no + 1 if p.job_count > 0 else 0,
                images=max(p.job_count, 0),
                eta=p.eta_relative if p.progress > 0.011 else None,
                elapsed=elapsed,
                textinfo=p.textinfo,
            )
        )
