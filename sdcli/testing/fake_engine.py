"""The fake's one "GPU": a FIFO queue lock, the global progress state, tasks and model loads.

Mirrors A1111's `shared.state`, `call_queue.queue_lock` and `modules/progress.py` closely enough
that a client's progress bar, queue display and interrupt handling meet the same numbers.
"""

from __future__ import annotations

import base64
import collections
import json
import random
import string
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sdcli.testing.fake_data import (
    Checkpoint,
    default_checkpoints,
    find_checkpoint,
    load_json,
    samplers_for,
    schedulers_for,
    sdnext_checkpoints,
    sdnext_data,
)
from sdcli.testing.fake_png import encode_png
from sdcli.testing.fake_profiles import Profile

RESTRICTED_OPTIONS = frozenset(
    {"api_enable_requests", "api_forbid_local_requests", "api_useragent"}
)


class HTTPFailure(Exception):
    """An HTTPException raised by web UI code: the status and its `detail` text."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class ServerCrash(Exception):
    """Any other exception inside a handler: a 500 naming the exception class and its text."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error, self.message = error, message


class Stopping(Exception):
    """The fake is shutting down: the request gets no answer."""


@dataclass
class State:
    """The fields of `shared.state` that GET /progress shows (stale ones included, as the real)."""

    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Preview:
    width: int
    height: int
    seed: int


def create_task_id(kind: str) -> str:
    """`task(txt2img-XXXXXXX)`, the id a request without `force_task_id` runs under."""
    suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=7))
    return f"task({kind}-{suffix})"


class Engine:
    """Server-side state shared by all request threads; every field is guarded by `cv`."""

    def __init__(
        self,
        profile: Profile,
        *,
        step_delay: float,
        model_load_delay: float,
        config_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.profile = profile
        self.cv = threading.Condition()
        self.step_delay = step_delay
        self.model_load_delay = model_load_delay
        self.options: dict[str, Any] = load_json("options.json")
        self.options.update(profile.extra_options)
        # captured through GET, which turns stored ints into floats; jobs saw the int (clip_skip 1)
        self.options["CLIP_stop_at_last_layers"] = 1
        # The keys in the web UI's `opts.data`: what config.json held at start-up, plus every key
        # set since (POST /options, an override). Only these are restored after an override
        # (process_images' `stored_opts`), and only these come back through GET's coercion
        # (int 1 -> 1.0). A fresh config.json holds just the checkpoint (fixtures/more/).
        self.explicit_options = {"sd_model_checkpoint", "sd_checkpoint_hash"}
        for key, value in (config_options or {}).items():
            self.options[key] = value
            self.explicit_options.add(key)
        self.models: list[Checkpoint] = default_checkpoints()
        self.loaded: Checkpoint = self.models[0]
        self.unloaded = False  # SD.Next after a failed load: no model at all
        self.sdnext_task = ""  # SD.Next's progress `id`
        if profile.family == "sdnext":
            # GET /options there lists only what `opts.data` holds: 33 keys on the captured server
            self.options = json.loads(json.dumps(sdnext_data()["options"]))
            self.explicit_options = set(self.options)
            self.models = sdnext_checkpoints()
            self.loaded = find_checkpoint(self.models, "randomSD15") or self.models[0]
        self.samplers = samplers_for(profile)
        self.schedulers = schedulers_for(profile) if profile.has_schedulers else []
        self.state = State()
        self.textinfo: str | None = None
        self.time_start = 0.0
        self.current_image: bytes | None = None
        self.current_image_step = 0
        self.id_live_preview = 0
        self._preview: _Preview | None = None
        self.pending: dict[str, float] = {}
        self.current_task: str | None = None
        self.finished: collections.deque[str] = collections.deque(maxlen=16)
        self._queue: collections.deque[object] = collections.deque()
        self._busy = False
        self.stopping = False
        self.job_started = threading.Event()
        self._pause_at: int | None = None
        self._job_pause: int | None = None
        self._pause_after = 0  # jobs to let through before the armed pause is taken
        self.paused = False
        self._resume = False
        self.fail_next_load = False
        self.interrogator_weights = True  # CLIP/DeepDanbooru weights downloaded
        self.deepbooru_failed = False  # without weights, only the first call dies
        # GET lists a test filled in (loras, sd-vae, prompt-styles...): name -> the body
        self.lists: dict[str, Any] = {}

    # --- the queue -------------------------------------------------------------------------

    @contextmanager
    def queue_lock(self) -> Iterator[None]:
        """A1111's FIFOLock: waiters are served in arrival order, one at a time."""
        ticket = object()
        with self.cv:
            self._queue.append(ticket)
            self.cv.notify_all()  # wait_queued() watches the queue
            while not self.stopping and (self._busy or self._queue[0] is not ticket):
                self.cv.wait()
            self._queue.remove(ticket)
            if self.stopping:
                self.cv.notify_all()
                raise Stopping
            self._busy = True
        try:
            yield
        finally:
            with self.cv:
                self._busy = False
                self.cv.notify_all()

    def idle(self) -> bool:
        return not self._busy and not self._queue

    def waiting(self) -> int:
        """Requests blocked on the queue lock behind the running one."""
        return len(self._queue)

    def sleep(self, seconds: float, *, wake_on_interrupt: bool = True) -> None:
        """Wait with `cv` held (it is released meanwhile); interrupt, skip and stop cut it short."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            if wake_on_interrupt and (self.state.interrupted or self.state.skipped):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.cv.wait(remaining)
        raise Stopping

    # --- test hooks ------------------------------------------------------------------------

    def arm_pause(self, step: int, after_jobs: int = 0) -> None:
        with self.cv:
            self._pause_at, self._resume = step, False
            self._pause_after = after_jobs

    def resume(self) -> None:
        with self.cv:
            self._pause_at, self._resume, self._pause_after = None, True, 0
            if not self.paused:
                self._job_pause = None  # a running job that has not reached its pause yet
            self.cv.notify_all()

    def maybe_pause(self, step: int) -> None:
        """Block at the armed step until resume(), interrupt, skip or stop (cv held)."""
        if self._job_pause is None or step != self._job_pause:
            return
        self._job_pause, self.paused, self._resume = None, True, False
        self.cv.notify_all()
        try:
            while not (
                self._resume or self.stopping or self.state.interrupted or self.state.skipped
            ):
                self.cv.wait()
        finally:
            self.paused = False
            self.cv.notify_all()
        if self.stopping:
            raise Stopping

    # --- job lifecycle (cv held) -----------------------------------------------------------

    def begin(self, job: str, task_id: str | None) -> None:
        st = self.state
        st.sampling_step, st.job_count, st.job_no = 0, -1, 0
        st.job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
        st.skipped = st.interrupted = st.stopping_generation = False
        st.job = job
        self.time_start = time.time()
        self.textinfo = None
        self.current_image, self.current_image_step, self.id_live_preview = None, 0, 0
        self._preview = None
        if task_id is not None:
            self.pending.pop(task_id, None)
            self.current_task = task_id
        if self._pause_after > 0:  # this job goes through; a later one takes the pause
            self._pause_after -= 1
        else:
            self._job_pause, self._pause_at = self._pause_at, None
        self.job_started.set()
        self.cv.notify_all()

    def set_preview(self, width: int, height: int, seed: int) -> None:
        self._preview = _Preview(max(1, width // 4), max(1, height // 4), seed)

    def sample_steps(self, steps: int) -> None:
        """One batch's sampling loop: a slow first step, then each step until interrupt or skip
        (the armed pause may hold any step, 0 before the first)."""
        st = self.state
        self.sleep(self.step_delay)  # the first step is the slow one: progress sits at 0.01
        self.maybe_pause(0)
        for step in range(1, steps + 1):
            if not (st.interrupted or st.skipped):
                self.sleep(self.step_delay)
            if st.interrupted or st.skipped:
                break
            st.sampling_step = step
            self.cv.notify_all()
            self.maybe_pause(step)

    def next_job(self) -> None:
        self.state.job_no += 1
        self.state.sampling_step = 0
        self.current_image_step = 0

    def finish_task(self, task_id: str) -> None:
        if self.current_task == task_id:
            self.current_task = None
        self.finished.append(task_id)

    def end(self, task_id: str | None) -> None:
        self.state.job, self.state.job_count = "", 0
        self.current_image, self._preview = None, None
        if task_id is not None and self.current_task == task_id:
            self.current_task = None
        self.cv.notify_all()

    # --- progress --------------------------------------------------------------------------

    def _update_preview(self) -> None:
        """Refresh the live preview every `show_progress_every_n_steps` steps, when polled."""
        every = self.options.get("show_progress_every_n_steps", 10)
        if not self.options.get("live_previews_enable", True) or self._preview is None:
            return
        if not isinstance(every, (int, float)) or every <= 0:
            return
        if self.state.sampling_step - self.current_image_step >= every:
            p = self._preview
            self.current_image = encode_png(p.width, p.height, p.seed + self.state.sampling_step)
            self.current_image_step = self.state.sampling_step
            self.id_live_preview += 1

    def progress(self, skip_current_image: bool) -> dict[str, Any]:
        """GET /sdapi/v1/progress."""
        with self.cv:
            st = self.state
            if st.job_count == 0:
                return {
                    "progress": 0.0,
                    "eta_relative": 0.0,
                    "state": st.as_dict(),
                    "current_image": None,
                    "textinfo": self.textinfo,
                }
            progress = min(0.01 + _job_fraction(st), 1)  # webui-api.md §4: the 0.01 start
            elapsed = time.time() - self.time_start
            eta_relative = elapsed / progress - elapsed
            self._update_preview()
            image = self.current_image
            return {
                "progress": progress,
                "eta_relative": eta_relative,
                "state": st.as_dict(),
                "current_image": None if skip_current_image or image is None else _b64(image),
                "textinfo": self.textinfo,
            }

    def task_progress(
        self, id_task: Any, id_live_preview: int, live_preview: bool
    ) -> dict[str, Any]:
        """POST /internal/progress: one task's view, including its place in the queue."""
        with self.cv:
            active = id_task is not None and id_task == self.current_task
            queued = id_task in self.pending
            completed = id_task in self.finished
            if not active:
                textinfo = "Waiting..."
                if queued:
                    order = sorted(self.pending, key=lambda t: self.pending[t])
                    textinfo = f"In queue: {order.index(id_task) + 1}/{len(order)}"
                return _task(active, queued, completed, None, None, None, -1, textinfo)
            st = self.state
            progress = min(_job_fraction(st), 1)
            elapsed = time.time() - self.time_start
            eta = elapsed / progress - elapsed if progress > 0 else None
            preview = None
            if live_preview and self.options.get("live_previews_enable", True):
                self._update_preview()
                if self.id_live_preview != id_live_preview and self.current_image is not None:
                    preview = "data:image/png;base64," + _b64(self.current_image)
                    id_live_preview = self.id_live_preview
            return _task(
                active, queued, completed, progress, eta, preview, id_live_preview, self.textinfo
            )

    # --- models ----------------------------------------------------------------------------

    def held(self, key: str) -> Any:
        """`opts.data.get(key)`: None for a key the server does not hold (only its default)."""
        return self.options.get(key) if key in self.explicit_options else None

    def configured_model(self) -> Checkpoint:
        return find_checkpoint(self.models, self.options.get("sd_model_checkpoint")) or self.loaded

    def load(self, model: Checkpoint, *, normalise_option: bool = True) -> None:
        """Load weights (cv held): a delay, then the hash is known and the option is the title."""
        if model is self.loaded:
            return
        self.sleep(self.model_load_delay, wake_on_interrupt=False)
        model.hashed = True
        self.loaded = model
        if normalise_option:
            self.options["sd_model_checkpoint"] = model.title
        self.options["sd_checkpoint_hash"] = model.sha256


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _task(
    active: bool,
    queued: bool,
    completed: bool,
    progress: float | None,
    eta: float | None,
    preview: str | None,
    id_live_preview: int,
    textinfo: str | None,
) -> dict[str, Any]:
    return {
        "active": active,
        "queued": queued,
        "completed": completed,
        "progress": progress,
        "eta": eta,
        "live_preview": preview,
        "id_live_preview": id_live_preview,
        "textinfo": textinfo,
    }


def _job_fraction(st: Any) -> float:
    """How far the job is: finished batches plus the current batch's steps, as a fraction."""
    if st.job_count <= 0:
        return 0.0
    fraction = st.job_no / st.job_count
    if st.sampling_steps > 0:
        fraction += st.sampling_step / st.sampling_steps / st.job_count
    return float(fraction)
