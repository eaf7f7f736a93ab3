"""Polling the server's progress for the request a Runner is waiting on, and its live previews."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sdcli.apitypes import TaskProgress
from sdcli.catalog import Catalog
from sdcli.client import WebUIClient
from sdcli.errors import SdcliError
from sdcli.events import ProgressSnapshot

POLL_INTERVAL = 0.3  # seconds: at most ~3 progress requests a second
PREVIEW_INTERVAL = 1.0  # seconds: a live preview is asked for at most this often

log = logging.getLogger("sdcli.progress")


class Poller:
    """Asks how far our task is; knows whether the server can tell about one task.

    With `preview`, a poll now and then also asks for the newest live preview instead (UI mode:
    `POST /internal/progress` with the id of the preview we have, so each comes once; else
    `current_image` from `GET /sdapi/v1/progress`): still one request a poll. `wanted` says
    whether the front end draws this server's preview now (over several servers, one is drawn).
    """

    def __init__(
        self,
        client: WebUIClient,
        catalog: Catalog,
        emit: Callable[[ProgressSnapshot], None],
        *,
        preview: bool = False,
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.emit = emit
        self.preview = preview
        self.wanted = wanted  # asked before each preview: is it drawn now? (None: always)
        self._internal_progress: bool | None = None  # None: not probed yet
        self._running_task: str | None = None  # ours, seen active: it holds the queue until done
        self._previews_checked = False
        self._preview_id = -1  # the id of the newest preview we have (per task)
        self._preview_asked = 0.0  # monotonic time of the last ask
        self._last_preview: bytes | None = None
        self._last = ProgressSnapshot(queued=False, fraction=0.0)

    def start(self) -> None:
        """Before a request: SD.Next has no force_task_id, its /internal/progress would never
        know our task. Preview ids start again with every task."""
        if self._internal_progress is None and self.catalog.is_sdnext():
            self._internal_progress = False
        self._preview_id, self._last_preview, self._preview_asked = -1, None, 0.0
        self._last = ProgressSnapshot(queued=False, fraction=0.0)

    def _server_makes_previews(self) -> bool:
        """False when the server's settings make no preview while sampling (said under --debug)."""
        try:
            options: dict[str, Any] = self.catalog.options()
        except SdcliError:
            return True  # cannot tell: ask, and show what comes
        if options.get("live_previews_enable") is False:
            log.debug("the server's live previews are off (live_previews_enable): the bar alone")
            return False
        every = options.get("show_progress_every_n_steps")
        if isinstance(every, int | float) and not isinstance(every, bool) and every < 0:
            log.debug(
                "the server shows no preview while sampling (show_progress_every_n_steps = %g):"
                " the bar alone",
                every,
            )
            return False
        if isinstance(every, int | float) and every > 1:
            log.debug("the server makes a live preview every %g sampling steps", every)
        return True

    def _preview_due(self) -> bool:
        if not self.preview or (self.wanted is not None and not self.wanted()):
            return False
        now = time.monotonic()
        if now - self._preview_asked < PREVIEW_INTERVAL:
            return False
        self._preview_asked = now
        return True

    def _new_preview(self, task: TaskProgress | None, elapsed: float) -> None:
        """/internal/progress gives a preview once, with its id; we send the id back."""
        if task is not None and task.live_preview is not None:
            self._preview_id = task.id_live_preview
            self.emit(replace(self._last, elapsed=elapsed, preview=task.live_preview))

    def poll(self, task_id: str, started: float) -> None:
        """One progress request; any failure here is cosmetic and ignored."""
        elapsed = time.monotonic() - started
        if self.preview and not self._previews_checked:  # once, while the first job runs
            self._previews_checked = True
            self.preview = self._server_makes_previews()
        due = self._preview_due()
        try:
            # Once our task runs, the global job stays ours until our answer comes: one request a
            # poll from then on, not two (issue 7: at most ~3 progress requests a second).
            if self._internal_progress is not False and self._running_task != task_id:
                task = self.client.task_progress(
                    task_id, live_preview=due, id_live_preview=self._preview_id
                )
                if task is None:
                    self._internal_progress = False
                else:
                    self._internal_progress = True
                    if not (task.active or task.completed):
                        self.emit(
                            ProgressSnapshot(
                                queued=True,
                                fraction=0.0,
                                elapsed=elapsed,
                                textinfo=task.textinfo,
                            )
                        )
                        return
                    self._running_task = task_id
                    if due:  # this request was the preview's: the numbers come next poll
                        self._new_preview(task, elapsed)
                        return
            if due and self._internal_progress:
                # This poll asks for the preview only; the bar keeps its last numbers.
                task = self.client.task_progress(
                    task_id, live_preview=True, id_live_preview=self._preview_id
                )
                self._new_preview(task, elapsed)
                return
            # Our task is running (or the server cannot tell): the global job is ours.
            p = self.client.progress(skip_current_image=not due)
        except SdcliError:
            return
        if p.idle:
            return
        preview = None
        if p.current_image is not None and p.current_image != self._last_preview:
            preview = self._last_preview = p.current_image  # the same one comes until a new
        self._last = ProgressSnapshot(
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
        self.emit(replace(self._last, preview=preview) if preview else self._last)
