"""Running a Job: each unit sent to a server, its progress followed, its images saved at once.

`Runner` drives one client (one server); `run_job` walks a job's prompts and units over it.
What happens is told to a sink (sdcli.events) as it happens, so any front end can render it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from sdcli.apitypes import GenerationResult
from sdcli.catalog import Catalog
from sdcli.client import WebUIClient
from sdcli.datatypes import mutable
from sdcli.errors import (
    ApiError,
    AuthError,
    ConnectionFailed,
    Interrupted,
    NotFoundError,
    SdcliError,
    ServerTimeout,
    UsageError,
    interruption,
    interruptions_held,
)
from sdcli.events import (
    Event,
    ImageSaved,
    Interrupting,
    Progressed,
    ProgressSnapshot,
    Retrying,
    Sink,
    UnitFailed,
    UnitFinished,
    UnitStarted,
    Warned,
    prepare_sink,
)
from sdcli.job import Job, Unit, unit_values, units
from sdcli.listcache import ListCache
from sdcli.names.answer import check_result, check_size
from sdcli.names.request import Resolved, resolve_names
from sdcli.plan import (
    Cells,
    check_job,
    first_prompt,
    job_body,
    lists_needed,
    resolve_cells,
    unit_names,
)
from sdcli.progress import POLL_INTERVAL, Poller
from sdcli.save import SavedImage, Saver

if TYPE_CHECKING:
    from sdcli.upscale import UpscaleSpec

MAX_CONNECTION_FAILURES = 3  # --keep-going gives up after this many prompts in a row cannot connect
INTERRUPT_GRACE = 10.0  # seconds to wait for the partial images after /interrupt
T = TypeVar("T")

log = logging.getLogger("sdcli.run")


@mutable
class Failure:
    prompt: str
    error: SdcliError


class SavedTally:
    """A run's saved images as a count and the last few: the images went to the sinks as
    ImageSaved events, so a run of any length stays flat in memory."""

    RECENT = 64

    def __init__(self) -> None:
        self.count = 0
        self.recent: deque[SavedImage] = deque(maxlen=self.RECENT)

    def extend(self, images: Sequence[SavedImage]) -> None:
        self.count += len(images)
        self.recent.extend(images)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0


@mutable
class RunSummary:
    saved: SavedTally = field(default_factory=SavedTally)
    failures: list[Failure] = field(default_factory=list)
    # --keep-going stopped early: the server went away (the last of the failures in a row)
    gave_up: ConnectionFailed | None = None
    prompts: int = 0  # prompts started, failed ones included


class Runner:
    """Runs units one after another over one client; tells `sink` what happens.

    `progress=False`: no progress requests at all (nobody would see them). `preview=True`: the
    progress events carry the server's live previews (only for a front end that draws them),
    when `preview_wanted(server URL)` says that this server's is drawn now.
    `cache`: the server's lists on disk (sdcli.listcache); an answer that differs from the
    request drops it.
    """

    def __init__(
        self,
        client: WebUIClient,
        sink: Sink,
        *,
        progress: bool = True,
        preview: bool = False,
        preview_wanted: Callable[[str], bool] | None = None,
        poll_interval: float = POLL_INTERVAL,
        interrupt_grace: float = INTERRUPT_GRACE,
        cache: ListCache | None = None,
        name: str | None = None,
        weight: int = 1,
    ) -> None:
        self.client = client
        self.sink = sink
        self.server = client.base_url
        # A run over several servers names each (a [servers.NAME] table, else host:port) and,
        # when several are free, gives the next unit to the heaviest (sdcli.schedule).
        self.name = name or urlsplit(self.server).netloc or self.server
        self.weight = weight
        self.catalog = Catalog(client, cache)
        self.progress = progress
        self.poll_interval = poll_interval
        self.interrupt_grace = interrupt_grace
        self._unit: Unit | None = None  # the unit being run: progress events name it
        wanted = None if preview_wanted is None else (lambda: preview_wanted(self.server))
        self.poller = Poller(
            client, self.catalog, self._progressed, preview=progress and preview, wanted=wanted
        )
        self._job: Job | None = None
        self._resolved: Resolved | None = None
        self._cells: Cells = {}  # an X/Y/Z plot's cells with names of their own, resolved
        self._upscale: UpscaleSpec | None = None
        self._warned: set[str] = set()
        # stop(): Ctrl-C reached the main thread while this Runner works in another one
        self._stop: KeyboardInterrupt | None = None
        self._stopping = threading.Event()
        self._ready = False  # this run's sinks and saver had their head start (_get_ready)

    @property
    def label(self) -> str:
        """How messages name this server: `gpu2 (http://host:7860)`, or just the URL."""
        return server_label(self.name, self.server)

    def stop(self, cause: KeyboardInterrupt) -> None:
        """Take Ctrl-C's path in this Runner's own thread: ask the server to stop the job, keep
        what it returned (signals reach the main thread only; sdcli.schedule relays them)."""
        self._stop = cause
        self._stopping.set()

    def emit(self, event: Event) -> None:
        self.sink(event)

    def warn(self, message: str) -> None:
        self.emit(Warned(message, self._unit, self.server))

    def _progressed(self, snapshot: ProgressSnapshot) -> None:
        if self._unit is not None:
            self.emit(Progressed(self._unit, self.server, snapshot))

    def prepare(self, job: Job) -> Resolved:
        """Resolve the job's names on this server (warning about what it changed) and pin the
        options the job overrides; the lists read get the same retries as the generation."""
        # A new run (interactive mode keeps one Runner for every prompt): its saver and sinks
        # are new, and get their head start at its first request (_get_ready).
        self._ready = False
        self.catalog.fetch = lambda call: self.with_retries(job, call)
        self.catalog.prefetch(lists_needed(job, self.catalog.asks))
        try:
            resolved = resolve_names(job.values, self.catalog, job.sets)
            cells = resolve_cells(job, self.catalog)
        except BaseException:
            self.catalog.settle()  # the other lists' requests end before the process does
            raise
        notes = dict.fromkeys(n for r in (resolved, *cells.values()) for n in r.notes)
        for note in notes:
            self.warn(note)
        for note in resolved.defaults_notes:
            log.debug("%s", note)
        self._pin_options(job, resolved, cells)
        self._job, self._resolved, self._cells = job, resolved, cells
        self._upscale = _chained_upscale(job, resolved)
        return resolved

    def _resolved_for(self, job: Job, unit: Unit | None = None) -> Resolved:
        if self._job is not job or self._resolved is None:
            self.prepare(job)
        assert self._resolved is not None
        return self._resolved if unit is None else unit_names(self._cells, unit, self._resolved)

    def body(self, job: Job, unit: Unit) -> dict[str, Any]:
        """The unit's request body, with this server's names; its `<lora:…>` names checked
        (the web UI ignores an unknown one, with a line in its console only)."""
        resolved = self._resolved_for(job, unit)
        values = unit_values(job, unit)
        body = job_body(job, values, unit.prompt, resolved, unit)
        try:
            self._check_loras(body)
            self._resolve_listed(values, body)
        except NotFoundError:
            if not self.catalog.refetch():  # a cached list lacks it: ask the server once
                raise
            body = job_body(job, values, unit.prompt, resolved, unit)
            self._check_loras(body)
            self._resolve_listed(values, body)
        self._warn_embeddings(body, model_given=bool(values.get("model")))
        return body

    def _warn_embeddings(self, body: dict[str, Any], *, model_given: bool) -> None:
        """Near misses of embedding names, skipped embeddings (sdcli.names.embeddings): once a
        run, as the same prompts come back unit after unit."""
        from sdcli.names.embeddings import embedding_warnings

        for warning in embedding_warnings(body, self.catalog, model_given=model_given):
            if warning not in self._warned:
                self._warned.add(warning)
                self.warn(warning)

    def _resolve_listed(self, values: Mapping[str, Any], body: dict[str, Any]) -> None:
        """VAE, styles and refiner as the server spells them: it ignores names it does not
        know (a style, a VAE) or fails late (a refiner). `--set` fields go as they are."""
        from sdcli.names.listed import resolve_listed

        overrides = body.get("override_settings") or {}
        vae = overrides.get("sd_vae") if values.get("vae") else None
        if isinstance(vae, str):
            vaes = self.catalog.vaes()
            if vaes is not None:
                overrides["sd_vae"] = resolve_listed(vae, vaes, "VAE")
        styles = body.get("styles") if values.get("styles") else None
        if isinstance(styles, list) and styles:
            known = self.catalog.styles()
            body["styles"] = [resolve_listed(str(s), known, "prompt style") for s in styles]
        refiner = body.get("refiner_checkpoint") if values.get("refiner") else None
        if isinstance(refiner, str):
            from sdcli.names.lookup import resolve_model

            body["refiner_checkpoint"] = resolve_model(refiner, self.catalog.models()).title

    def _check_loras(self, body: dict[str, Any]) -> None:
        from sdcli.names.listed import check_loras, lora_names

        prompts = [str(body.get("prompt", "")), str(body.get("negative_prompt", ""))]
        if not any(lora_names(p) for p in prompts):
            return
        known = self.catalog.loras()
        if known is None:
            return
        check_loras(prompts, known)

    def _pin_options(self, job: Job, resolved: Resolved, cells: Cells) -> None:
        """Make the server restore every key this run overrides (see sdcli.pinning), in any
        cell of an X/Y/Z plot too."""
        from sdcli.pinning import NEVER_PIN, known_held, pins_needed, restore_after

        bodies = [job_body(job, job.values, "", resolved)]
        if cells:  # sdcli.sweeps is for a job with axes only
            from sdcli.sweeps import cell_values

            bodies += [job_body(job, cell_values(job.values, k), "", r) for k, r in cells.items()]
        held = self.catalog.held_options()
        restored = {k: v for body in reversed(bodies) for k, v in restore_after(body).items()}
        overrides = {k: v for k, v in restored.items() if k not in NEVER_PIN}
        for key in sorted(held & set(overrides)):
            log.debug("override_settings: %s is held (cached): the server restores it", key)
            del overrides[key]
        if not overrides or self.catalog.is_sdnext():
            return
        options = self.catalog.options()
        pins = pins_needed(overrides, options)
        if pins:
            self.client.set_options(pins)
        self.catalog.remember_held(set(pins) | known_held(overrides, options))
        for key, value in pins.items():
            log.debug(
                "override_settings: pinned %s to its value %r, so the server restores it after "
                "each job (it restores only the settings it holds)",
                key,
                value,
            )

    def run_unit(
        self, job: Job, unit: Unit, saver: Saver, *, into: SavedTally | None = None
    ) -> list[SavedImage]:
        """Send one request, save its images (appended to `into` as each is written: a run's
        images so far), check the answer. Ctrl-C keeps what the server had made."""
        kept = SavedTally() if into is None else into
        resolved = self._resolved_for(job, unit)
        payload = self.body(job, unit)
        self._unit = unit
        try:
            return self._run(job, unit, saver, kept, resolved, payload)
        finally:
            self._unit = None

    def _run(
        self,
        job: Job,
        unit: Unit,
        saver: Saver,
        kept: SavedTally,
        resolved: Resolved,
        payload: dict[str, Any],
    ) -> list[SavedImage]:
        self.emit(UnitStarted(unit, self.server, payload))
        started = time.monotonic()
        stamp = datetime.now()
        once = functools.partial(self._generate_once, job, payload, saver)
        try:
            result = self.with_retries(job, once)
        except ServerTimeout as exc:
            # The job is still running (or queued) on the server: never sent twice.
            from sdcli.jobs import STILL_GENERATING

            exc.message = f"{exc.message}; {STILL_GENERATING}"
            raise
        except ApiError as exc:
            self._explain_forge_failure(exc, resolved)
            raise
        except _Partial as partial:
            before = len(kept)
            with contextlib.suppress(ApiError):  # the Ctrl-C is the news, not a bad image
                self._save_all(unit, saver, payload, partial.result, stamp, kept, interrupted=True)
            # SD.Next returned a 512x512 image for an interrupted 64x64 job: say so
            with contextlib.suppress(TypeError, ValueError):
                check_size(payload, partial.result, self.warn)
            signum, by = interruption(partial.cause)
            total = len(kept)
            raise Interrupted(kept_message(by, total, total - before), signum=signum) from None
        except Interrupted as exc:
            if kept:
                message = f"{exc}; kept the {len(kept)} image(s) saved before"
                raise Interrupted(message, signum=int(exc.exit_code) - 128) from None
            raise
        if not result.images and not result.problems:
            raise ApiError(
                "the server answered without any image",
                hint="no model may be loaded (SD.Next answers so after a failed load: "
                "`sdcli info` shows the model, `sdcli set-model NAME` loads one); "
                "or is `send_images` off, or did an extension swallow the output?",
            )
        saved = self._save_all(unit, saver, payload, result, stamp, kept)
        self.emit(UnitFinished(unit, self.server, saved, time.monotonic() - started))
        for warning in result.warnings:
            self.warn(warning)
        # Only warnings from here on, and only once the images are safely on disk.
        try:
            check_result(payload, resolved, result, self.catalog, self._differs)
        except (TypeError, ValueError, KeyError) as exc:
            self.warn(f"could not check the server's answer: {exc}")
        return saved

    def _save_all(
        self,
        unit: Unit,
        saver: Saver,
        payload: dict[str, Any],
        result: GenerationResult,
        stamp: datetime,
        kept: SavedTally,
        *,
        interrupted: bool = False,
    ) -> list[SavedImage]:
        """Save the answer's images; they are all on disk before the first ImageSaved (a reader
        closing stdout must never cost an image already received)."""
        saved: list[SavedImage] = []
        try:
            saver.save_all(
                payload,
                result,
                stamp,
                unit.batch,
                saved,
                interrupted=interrupted,
                warn=self.warn,
                init=unit.init,
                first_index=unit.index,
            )
            if self._upscale is not None and not interrupted:
                self._upscale_saved(saved, self._upscale)
        finally:
            # A run keeps its images' paths, never their bytes: only the event carries them.
            light = [replace(item, data=b"", encoded="") for item in saved]
            kept.extend(light)
            for item, full in zip(light, saved, strict=True):
                self.emit(ImageSaved(unit, self.server, item, data=full.data, encoded=full.encoded))
        return light

    def _upscale_saved(self, saved: list[SavedImage], spec: UpscaleSpec) -> None:
        """`--upscale`: each saved image through the extras tab, in its place, before anyone is
        told of it (sdcli.upscale); a failure keeps the images as generated."""
        from sdcli.upscale import upscale_in_place

        assert self._job is not None
        for i, image in enumerate(saved):
            upscale = functools.partial(upscale_in_place, self.client, image, spec)
            try:
                saved[i] = self.with_retries(self._job, upscale)
            except ApiError as exc:
                # The unit's images are saved: a run over several servers must not send it to
                # another one for a 5xx here (sdcli.schedule), so the status stays behind.
                raise ApiError(
                    f"upscaling {image.path}: {exc.message}; kept as generated",
                    detail=exc.detail,
                    hint=exc.hint,
                ) from exc
            except SdcliError as exc:
                exc.message = f"upscaling {image.path}: {exc.message}; kept as generated"
                raise

    def _differs(self, message: str) -> None:
        """The answer is not what was asked: say so, and trust no cached list next time."""
        self.catalog.distrust()
        self.warn(message)

    def _explain_forge_failure(self, exc: ApiError, resolved: Resolved) -> None:
        """Forge loads a selected checkpoint only when a job starts: a broken one fails the job.

        Only a 500 whose text speaks of loading weights is taken for that (one GET /options).
        """
        text = (exc.detail or exc.message).lower()
        if exc.status != 500 or not any(word in text for word in _LOAD_WORDS):
            return
        try:
            forge = self.catalog.is_forge()
            options = self.catalog.options()
        except SdcliError:
            return
        if not forge:
            return
        from sdcli.names.lookup import checkpoint_option

        title = resolved.model.title if resolved.model else checkpoint_option(options)
        exc.hint = (
            f"Forge loads the checkpoint {title!r} only when a job starts: if it cannot load it, "
            "the job fails; its console says why (`sdcli set-model` another one)"
        )

    def with_retries(self, job: Job, call: Callable[[], T]) -> T:
        """`call()`, again after connection errors and 502/503/504, up to `job.retries` times."""
        attempt = 0
        while True:
            try:
                return call()
            except (ServerTimeout, Interrupted):
                raise  # a timed-out job may still be running: never send it twice
            except (ConnectionFailed, ApiError) as exc:
                transient = isinstance(exc, ConnectionFailed) or (
                    isinstance(exc, ApiError) and exc.status in (502, 503, 504)
                )
                if not transient or attempt >= job.retries:
                    raise
                attempt += 1
                delay = min(job.retry_backoff * 2 ** (attempt - 1), 30.0)
                self.emit(Retrying(self._unit, self.server, exc, attempt, delay))
                if self._stopping.wait(delay) and self._stop is not None:
                    raise Interrupted(f"interrupted{interruption(self._stop)[1]}") from None

    def _generate_once(self, job: Job, payload: dict[str, Any], saver: Saver) -> GenerationResult:
        task_id = f"task(sdcli-{uuid.uuid4().hex[:12]})"
        if self.progress:
            self.poller.start()
        body = dict(payload)
        if not self.catalog.known_sdnext:
            body["force_task_id"] = task_id
        done = threading.Event()
        # Set once the request is sent whole (or the attempt is over): the wait for the answer
        # is when the sinks and the saver get ready, without holding the request back.
        woken = threading.Event()
        box: dict[str, Any] = {}

        def sent() -> None:
            box["sent"] = True
            woken.set()

        def work() -> None:
            try:
                box["result"] = self.client.generate(job.mode, body, sent=sent)
            except BaseException as exc:  # handed to the main thread as is
                box["error"] = exc
            finally:
                done.set()
                woken.set()

        worker = threading.Thread(target=work, name=f"sdcli-{job.mode}", daemon=True)
        started = time.monotonic()
        interval = self.poll_interval if self.progress else 0.5
        try:
            # start() inside: a Ctrl-C that lands while it waits for the thread (the request
            # may be on its way already) must still interrupt the server's job
            worker.start()
            waiting = done if self._ready else woken
            while not done.is_set():
                if waiting.wait(interval):
                    if waiting is woken:
                        waiting = done
                        if box.get("sent"):
                            self._get_ready(saver)
                    continue
                if self._stop is not None:
                    raise self._stop
                if self.progress:
                    self.poller.poll(task_id, started)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (errors.Terminated)
            self._interrupt(done)
            if "result" in box:
                raise _Partial(box["result"], exc) from None
            signum, by = interruption(exc)
            raise Interrupted(
                f"interrupted{by} before the server returned any image", signum=signum
            ) from None
        if "error" in box:
            raise box["error"]
        result: GenerationResult = box["result"]
        return result

    def _get_ready(self, saver: Saver) -> None:
        """Once per run (`prepare`), while its first request is on its way: the saver and the
        sinks do what does not depend on the answer (imports, starting the history's writer).
        A head start only: each works the same without it, so a failure here is left for the
        step that needs the work to meet again, where it always was."""
        self._ready = True
        try:
            with interruptions_held():  # a Ctrl-C now is taken once all are ready
                saver.prepare()
                prepare_sink(self.sink)
        except Exception as exc:
            log.debug("getting ready while the server works failed: %r", exc)

    def _interrupt(self, done: threading.Event) -> None:
        """First Ctrl-C: ask the server to stop and wait briefly for what it made so far.

        A second Ctrl-C while waiting propagates as KeyboardInterrupt and exits at once.
        """
        if self._unit is not None:
            self.emit(Interrupting(self._unit, self.server))
        try:
            self.client.interrupt()
        except SdcliError as exc:
            from sdcli.jobs import STILL_GENERATING

            self.warn(f"could not ask the server to stop ({exc}): {STILL_GENERATING}")
            return
        done.wait(self.interrupt_grace)


def run_job(
    job: Job,
    runner: Runner | Sequence[Runner],
    *,
    saver: Saver | None = None,
    summary: RunSummary | None = None,
    plan: Callable[[Job, str], Sequence[Unit]] = units,
) -> RunSummary:
    """Run every prompt of `job`, unit by unit; `summary` (if given) is filled in as it goes, so
    a caller still has the counts when an error or Ctrl-C ends the run early.

    `plan` gives a prompt's units, called once per prompt in order: a run journal's
    (sdcli.journal) fixes their seeds and indexes and leaves out those already done.

    With `job.keep_going`, a failed prompt is told (UnitFailed) and the next one goes; after
    MAX_CONNECTION_FAILURES prompts in a row cannot connect, the run stops (`summary.gave_up`).
    Several Runners (one per server) share the units through sdcli.schedule.
    """
    saver = Saver.for_job(job) if saver is None else saver
    summary = RunSummary() if summary is None else summary
    if not isinstance(runner, Runner):
        if len(runner) > 1:
            from sdcli.schedule import run_on_servers

            return run_on_servers(job, runner, saver=saver, summary=summary, plan=plan)
        (runner,) = runner
    prompts: Iterator[str] = first_prompt(job)
    check_job(job)
    saver.check()
    runner.prepare(job)
    unreachable = 0  # prompts in a row that failed to connect: is the server gone?
    for prompt in prompts:
        summary.prompts += 1
        unit: Unit | None = None
        try:
            failed = False
            for unit in plan(job, prompt):
                try:
                    runner.run_unit(job, unit, saver, into=summary.saved)
                except SdcliError as exc:
                    if not _next_cell(job, unit, exc):
                        raise
                    # an X/Y/Z cell: a blank in its grid; the plot's other cells go on
                    if not failed:
                        summary.failures.append(Failure(prompt, exc))
                        failed = True
                    runner.emit(UnitFailed(unit, runner.server, exc))
        except (UsageError, AuthError, Interrupted):
            raise
        except SdcliError as exc:
            if not job.keep_going or unit is None:
                raise
            summary.failures.append(Failure(prompt, exc))
            runner.emit(UnitFailed(unit, runner.server, exc))
            unreachable = unreachable + 1 if isinstance(exc, ConnectionFailed) else 0
            if isinstance(exc, ConnectionFailed) and unreachable >= MAX_CONNECTION_FAILURES:
                summary.gave_up = exc  # the caller may still read what was not tried
                break
        else:
            unreachable = 0
    return summary


def _chained_upscale(job: Job, resolved: Resolved) -> UpscaleSpec | None:
    """`--upscale NAME:2`: what each saved image goes through (sdcli.upscale, off the start-up
    path of a run without it)."""
    if not job.values.get("upscale"):
        return None
    from sdcli.upscale import chained_spec

    return chained_spec(job.values, resolved.upscaler)


def _next_cell(job: Job, unit: Unit, error: SdcliError) -> bool:
    """With --keep-going, a failed X/Y/Z cell does not cost its plot's other cells (a lost
    server still ends the prompt, as it would any other)."""
    fatal = (UsageError, AuthError, Interrupted, ConnectionFailed)
    return job.keep_going and bool(unit.cell) and not isinstance(error, fatal)


def server_label(name: str, url: str) -> str:
    """How messages name a server of several: `gpu2 (http://host:7860)`, or just the URL."""
    return url if name == urlsplit(url).netloc else f"{name} ({url})"


def kept_message(by: str, total: int, partial: int, servers: str = "the server") -> str:
    """The Ctrl-C message: how many images this whole run kept, the interrupted job's among them."""
    text = f"interrupted{by}; kept {total} image(s) {servers} had made"
    return text if partial == total else f"{text} ({partial} from the interrupted job)"


# What the exception of a checkpoint that cannot be loaded says (safetensors, torch, Forge).
_LOAD_WORDS = ("safetensor", "state_dict", "checkpoint", "deserializ", "pickl", "load")


class _Partial(Exception):
    """Carries the interrupted job's partial result from the wait loop to the saver."""

    def __init__(self, result: GenerationResult, cause: KeyboardInterrupt) -> None:
        super().__init__("partial result")
        self.result = result
        self.cause = cause
