"""The generate use case: run each request, report progress, save exactly what came back."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sdcli.apitypes import GeneratedImage, GenerationResult
from sdcli.catalog import Catalog
from sdcli.client import WebUIClient
from sdcli.errors import (
    ApiError,
    AuthError,
    ConnectionFailed,
    Interrupted,
    OutputError,
    SdcliError,
    ServerTimeout,
    UsageError,
    interruption,
)
from sdcli.names.answer import answer_model, check_result, check_size
from sdcli.names.request import Resolved, resolve_names
from sdcli.payload import build_payload
from sdcli.requestcheck import check_body, check_seed_span

MAX_CONNECTION_FAILURES = 3  # --keep-going gives up after this many prompts in a row cannot connect
T = TypeVar("T")

log = logging.getLogger("sdcli.generate")

POLL_INTERVAL = 0.3  # seconds: at most ~3 progress requests a second
INTERRUPT_GRACE = 10.0  # seconds to wait for the partial images after /interrupt
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class SavedImage:
    path: Path
    seed: int | None
    prompt: str
    negative_prompt: str
    model: str | None
    infotext: str | None
    index: int
    batch: int
    interrupted: bool = False  # from a job stopped by Ctrl-C: fewer steps than asked for

    def as_json(self) -> dict[str, Any]:
        """One `--json` line: typed values, the usual settings at the top (README "JSON output")."""
        from sdcli.infotext import json_fields, parse_infotext, typed_parameters

        info = parse_infotext(self.infotext) if self.infotext else None
        fields = json_fields(info)
        return {
            "path": str(self.path),
            "seed": self.seed if self.seed is not None else fields["seed"],
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "model": self.model or fields["model"],
            "width": fields["width"],
            "height": fields["height"],
            "steps": fields["steps"],
            "sampler": fields["sampler"],
            "scheduler": fields["scheduler"],
            "cfg_scale": fields["cfg_scale"],
            "interrupted": self.interrupted,
            "index": self.index,
            "batch": self.batch,
            "parameters": typed_parameters(info) if info else {},
            "infotext": self.infotext,
        }


@dataclass
class Failure:
    prompt: str
    error: SdcliError


@dataclass
class RunSummary:
    saved: list[SavedImage] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # --keep-going stopped early: the server went away (the last of the failures in a row)
    gave_up: ConnectionFailed | None = None
    prompts: int = 0  # prompts started, failed ones included


class Reporter(Protocol):
    """How the use case talks to whoever renders it (the CLI); all methods may be no-ops."""

    def batch_started(self, prompt: str, batch: int, batches: int) -> None: ...
    def progress(self, snapshot: ProgressSnapshot) -> None: ...
    def image_saved(self, image: SavedImage) -> None: ...
    def batch_finished(self, images: Sequence[SavedImage], seconds: float) -> None: ...
    def warning(self, message: str) -> None: ...
    def failed(self, prompt: str, error: SdcliError) -> None: ...
    def interrupting(self) -> None: ...
    def retrying(self, error: SdcliError, attempt: int, delay: float) -> None: ...


@dataclass
class GenerateJob:
    """Everything `sdcli generate` decided before talking to the server."""

    values: Mapping[str, Any]  # merged preset + flag values (user-facing keys)
    sets: Mapping[str, Any]  # --set, request field names
    preset_names: Sequence[str]
    output_dir: Path
    name_template: str
    overwrite: bool = False
    batches: int = 1
    keep_going: bool = False
    retries: int = 0
    retry_backoff: float = 1.0
    show_progress: bool = True


def dry_run_payload(
    job: GenerateJob, prompt: str, resolved: Resolved | None = None
) -> dict[str, Any]:
    """The body as it would be sent: with names resolved against the server when it answered
    (`resolved`), else as typed."""
    if resolved is not None:
        body = request_body(job, resolved, dict(job.values), prompt)
        check_body(body)
        return body
    body = build_payload(
        job.values,
        prompt,
        sampler_name=job.values.get("sampler"),
        scheduler=job.values.get("scheduler"),
        model_title=job.values.get("model"),
        sets=job.sets,
    )
    check_body(body)
    return body


def check_job(job: GenerateJob) -> None:
    """Refuse, before any request, settings the body or the server could not take."""
    dry_run_payload(job, "")
    images = job.batches * int(job.values.get("batch_size") or 1)
    check_seed_span(job.values.get("seed"), images)


def request_body(
    job: GenerateJob, resolved: Resolved, values: Mapping[str, Any], prompt: str
) -> dict[str, Any]:
    """The txt2img body with the names the server spells and the defaults sdcli fills in."""
    return build_payload(
        values,
        prompt,
        sampler_name=resolved.sampler_name,
        scheduler=resolved.scheduler,
        model_title=resolved.model.title if resolved.model else None,
        sets=job.sets,
        hr_upscaler=resolved.hr_upscaler,
        clip_skip_field=resolved.clip_skip_field,
        defaults=resolved.defaults,
    )


def resolve_for_dry_run(
    client: WebUIClient, job: GenerateJob
) -> tuple[Resolved | None, SdcliError | None]:
    """Resolve names with the server's lists (read-only GETs); the error if it cannot answer.

    A wrong name is still a usage error (exit 2): that is what a dry run is for.
    """
    try:
        return resolve_names(job.values, Catalog(client), job.sets), None
    except UsageError:
        raise
    except SdcliError as exc:
        return None, exc


class Generator:
    """Runs generation requests one after another over one client, saving as results arrive."""

    def __init__(
        self,
        client: WebUIClient,
        reporter: Reporter,
        *,
        poll_interval: float = POLL_INTERVAL,
        interrupt_grace: float = INTERRUPT_GRACE,
    ) -> None:
        self.client = client
        self.reporter = reporter
        self.catalog = Catalog(client)
        self.poll_interval = poll_interval
        self.interrupt_grace = interrupt_grace
        self._internal_progress: bool | None = None  # None: not probed yet
        self._running_task: str | None = None  # ours, seen active: it holds the queue until done
        self._counter = 0

    def run(
        self, job: GenerateJob, prompts: Iterable[str], summary: RunSummary | None = None
    ) -> RunSummary:
        """Run every prompt; `summary` (if given) is filled in as it goes, so a caller still
        has the counts when an error or Ctrl-C ends the run early."""
        from sdcli.output import check_output_dir

        check_job(job)
        check_output_dir(job.output_dir)
        # The lists read before generating get the same retries as the generation.
        self.catalog.fetch = lambda call: self._with_retries(job, call)
        resolved = resolve_names(job.values, self.catalog, job.sets)
        for note in resolved.notes:
            self.reporter.warning(note)
        for note in resolved.defaults_notes:
            log.debug("%s", note)
        self._pin_options(job, resolved)
        summary = RunSummary() if summary is None else summary
        unreachable = 0  # prompts in a row that failed to connect: is the server gone?
        for prompt in prompts:
            summary.prompts += 1
            try:
                self._run_prompt(job, resolved, prompt, summary)
            except (UsageError, AuthError, Interrupted):
                raise
            except SdcliError as exc:
                if not job.keep_going:
                    raise
                summary.failures.append(Failure(prompt, exc))
                self.reporter.failed(prompt, exc)
                unreachable = unreachable + 1 if isinstance(exc, ConnectionFailed) else 0
                if isinstance(exc, ConnectionFailed) and unreachable >= MAX_CONNECTION_FAILURES:
                    summary.gave_up = exc  # the caller may still read what was not tried
                    break
            else:
                unreachable = 0
        return summary

    def _pin_options(self, job: GenerateJob, resolved: Resolved) -> None:
        """Make the server restore every key this run overrides (see sdcli.pinning)."""
        from sdcli.pinning import NEVER_PIN, pins_needed, restore_after

        body = request_body(job, resolved, job.values, "")
        overrides = {k: v for k, v in restore_after(body).items() if k not in NEVER_PIN}
        if not overrides or self.catalog.is_sdnext():
            return
        pins = pins_needed(overrides, self.catalog.options())
        if not pins:
            return
        self.client.set_options(pins)
        for key, value in pins.items():
            log.debug(
                "override_settings: pinned %s to its value %r, so the server restores it after "
                "each job (it restores only the settings it holds)",
                key,
                value,
            )

    def _run_prompt(
        self, job: GenerateJob, resolved: Resolved, prompt: str, summary: RunSummary
    ) -> None:
        base_seed = job.values.get("seed")
        batch_size = int(job.values.get("batch_size") or 1)
        for batch in range(job.batches):
            if self._counter:  # a second request in this process: keep the heap (sdcli.heap)
                from sdcli.heap import keep_freed_heap

                keep_freed_heap()
            values = dict(job.values)
            if isinstance(base_seed, int) and base_seed >= 0:
                # Same seeds the web UI's own batch count would give: seed + image index.
                values["seed"] = base_seed + batch * batch_size
            payload = request_body(job, resolved, values, prompt)
            check_body(payload)
            self.reporter.batch_started(prompt, batch + 1, job.batches)
            started = time.monotonic()
            stamp = datetime.now()
            once = functools.partial(self._generate_once, job, payload)
            try:
                result = self._with_retries(job, once)
            except ServerTimeout as exc:
                # The job is still running (or queued) on the server: never sent twice.
                from sdcli.jobs import STILL_GENERATING

                exc.message = f"{exc.message}; {STILL_GENERATING}"
                raise
            except ApiError as exc:
                self._explain_forge_failure(exc, resolved)
                raise
            except _Partial as partial:
                before = len(summary.saved)
                with contextlib.suppress(ApiError):  # the Ctrl-C is the news, not a bad image
                    self._save_all(
                        job, payload, partial.result, stamp, batch + 1, summary, interrupted=True
                    )
                # SD.Next returned a 512x512 image for an interrupted 64x64 job: say so
                with contextlib.suppress(TypeError, ValueError):
                    check_size(payload, partial.result, self.reporter.warning)
                signum, by = interruption(partial.cause)
                total = len(summary.saved)
                raise Interrupted(_kept(by, total, total - before), signum=signum) from None
            except Interrupted as exc:
                if summary.saved:
                    kept = f"{exc}; kept the {len(summary.saved)} image(s) saved before"
                    raise Interrupted(kept, signum=int(exc.exit_code) - 128) from None
                raise
            if not result.images and not result.problems:
                raise ApiError(
                    "the server answered without any image",
                    hint="no model may be loaded (SD.Next answers so after a failed load: "
                    "`sdcli info` shows the model, `sdcli set-model NAME` loads one); "
                    "or is `send_images` off, or did an extension swallow the output?",
                )
            saved = self._save_all(job, payload, result, stamp, batch + 1, summary)
            self.reporter.batch_finished(saved, time.monotonic() - started)
            for warning in result.warnings:
                self.reporter.warning(warning)
            # Only warnings from here on, and only once the images are safely on disk.
            try:
                check_result(payload, resolved, result, self.catalog, self.reporter.warning)
            except (TypeError, ValueError, KeyError) as exc:
                self.reporter.warning(f"could not check the server's answer: {exc}")

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

    def _with_retries(self, job: GenerateJob, call: Callable[[], T]) -> T:
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
                self.reporter.retrying(exc, attempt, delay)
                time.sleep(delay)

    def _generate_once(self, job: GenerateJob, payload: dict[str, Any]) -> GenerationResult:
        task_id = f"task(sdcli-{uuid.uuid4().hex[:12]})"
        if job.show_progress and self._internal_progress is None and self.catalog.is_sdnext():
            # SD.Next has no force_task_id: its /internal/progress would never know our task.
            self._internal_progress = False
        body = dict(payload)
        if not self.catalog.known_sdnext:
            body["force_task_id"] = task_id
        done = threading.Event()
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = self.client.txt2img(body)
            except BaseException as exc:  # handed to the main thread as is
                box["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name="sdcli-txt2img", daemon=True)
        started = time.monotonic()
        worker.start()
        try:
            while not done.wait(self.poll_interval if job.show_progress else 0.5):
                if job.show_progress:
                    self._poll(task_id, started)
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

    def _interrupt(self, done: threading.Event) -> None:
        """First Ctrl-C: ask the server to stop and wait briefly for what it made so far.

        A second Ctrl-C while waiting propagates as KeyboardInterrupt and exits at once.
        """
        self.reporter.interrupting()
        try:
            self.client.interrupt()
        except SdcliError as exc:
            from sdcli.jobs import STILL_GENERATING

            self.reporter.warning(f"could not ask the server to stop ({exc}): {STILL_GENERATING}")
            return
        done.wait(self.interrupt_grace)

    def _poll(self, task_id: str, started: float) -> None:
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
                        self.reporter.progress(
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
        self.reporter.progress(
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

    def _save_all(
        self,
        job: GenerateJob,
        payload: Mapping[str, Any],
        result: GenerationResult,
        stamp: datetime,
        batch: int,
        summary: RunSummary,
        *,
        interrupted: bool = False,
    ) -> list[SavedImage]:
        """Save every usable image of one answer, record and report them, then raise any problem.

        A broken image, a full disk on the next one or a reader closing stdout must never cost
        the images already received: they are all on disk before the first path is printed.
        When the disk fills, the error names the seeds of the images that were lost with it.
        """
        saved: list[SavedImage] = []
        problems = [ApiError(text) for text in result.problems]
        try:
            for n, image in enumerate(result.images):
                try:
                    saved.append(self._save(job, payload, result, image, stamp, batch, interrupted))
                except ApiError as exc:
                    problems.append(exc)
                except OutputError as exc:
                    raise _not_saved(exc, result.images[n:]) from exc
        finally:
            summary.saved.extend(saved)
            for item in saved:
                self.reporter.image_saved(item)
        if problems:
            raise problems[0]
        return saved

    def _save(
        self,
        job: GenerateJob,
        payload: Mapping[str, Any],
        result: GenerationResult,
        image: GeneratedImage,
        stamp: datetime,
        batch: int,
        interrupted: bool = False,
    ) -> SavedImage:
        from sdcli.output import render_name, slugify, write_new_file
        from sdcli.pngmeta import NotPngError, TextNotStorable, sniff_image_format, with_parameters

        data = image.data
        kind = sniff_image_format(data)
        if kind is None:
            raise ApiError(f"image {image.index + 1} from the server is not an image file")
        if kind == "png" and image.infotext:
            try:
                data = with_parameters(data, image.infotext)
            except NotPngError as exc:
                raise ApiError(f"image {image.index + 1} from the server is a broken PNG") from exc
            except TextNotStorable as exc:
                n = image.index + 1
                self.reporter.warning(f"image {n} saved without its parameters: {exc}")
        self._counter += 1
        info = result.info
        model = answer_model(result)
        prompt = str(info.get("prompt", payload.get("prompt", "")))
        fields = {
            "seed": image.seed if image.seed is not None else "noseed",
            "date": stamp,
            "time": stamp,
            "preset": "+".join(job.preset_names) or "none",
            "index": self._counter,
            "batch": batch,
            "prompt_slug": slugify(prompt) or "untitled",
            "model": model or "model",
            "sampler": info.get("sampler_name", payload.get("sampler_name")),
            "scheduler": payload.get("scheduler"),
            "cfg_scale": info.get("cfg_scale", payload.get("cfg_scale")),
            "width": info.get("width", payload.get("width")),
            "height": info.get("height", payload.get("height")),
            "steps": info.get("steps", payload.get("steps")),
        }
        name = render_name(job.name_template, fields, ext=EXTENSIONS[kind])
        path = write_new_file(job.output_dir, name, data, overwrite=job.overwrite)
        saved = SavedImage(
            path=path,
            seed=image.seed,
            prompt=prompt,
            negative_prompt=str(info.get("negative_prompt", payload.get("negative_prompt", ""))),
            model=model,
            infotext=image.infotext,
            index=self._counter,
            batch=batch,
            interrupted=interrupted,
        )
        return saved


def _kept(by: str, total: int, partial: int) -> str:
    """The Ctrl-C message: how many images this whole run kept, the interrupted job's among them."""
    text = f"interrupted{by}; kept {total} image(s) the server had made"
    return text if partial == total else f"{text} ({partial} from the interrupted job)"


def _not_saved(error: OutputError, lost: Sequence[GeneratedImage]) -> OutputError:
    """The write error, naming the images it cost, so they can be made again by seed."""
    seeds = [str(image.seed) if image.seed is not None else "unknown" for image in lost]
    label = "seed" if len(seeds) == 1 else "seeds"
    return OutputError(f"{error.message}; not saved: {label} {', '.join(seeds)}", hint=error.hint)


# What the exception of a checkpoint that cannot be loaded says (safetensors, torch, Forge).
_LOAD_WORDS = ("safetensor", "state_dict", "checkpoint", "deserializ", "pickl", "load")


class _Partial(Exception):
    """Carries the interrupted job's partial result from the wait loop to the saver."""

    def __init__(self, result: GenerationResult, cause: KeyboardInterrupt) -> None:
        super().__init__("partial result")
        self.result = result
        self.cause = cause
