"""From what a front end parsed to a checked Job: presets, flags, --set and --from-image layered.

Every front end (the CLI today, an interactive session or a queue next) builds a JobRequest and
calls `plan_job`; nothing is sent to a server here. The request bodies are built here too, so a
dry run and a real run send the same thing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sdcli.errors import SdcliError, UsageError
from sdcli.job import Job, Mode

if TYPE_CHECKING:
    from sdcli.client import WebUIClient
    from sdcli.config import Settings
    from sdcli.names.request import Resolved


@dataclass(frozen=True)
class JobRequest:
    """What a front end parsed; nothing checked yet. `flags` are preset keys (`cfg_scale`)."""

    words: Sequence[str] = ()  # prompt words, joined with spaces; ["-"]: one prompt a line of stdin
    prompts_file: Path | None = None
    presets: Sequence[str] = ()  # none given: the configured default preset
    flags: Mapping[str, Any] = field(default_factory=dict)
    sets: Sequence[str] = ()  # KEY=VALUE items of --set
    from_image: Path | None = None
    mode: Mode = "txt2img"
    output_dir: Path | None = None  # None: the configured one
    name_template: str | None = None
    overwrite: bool = False
    keep_going: bool = False
    retries: int = 0
    flag_labels: Mapping[str, str] = field(default_factory=dict)  # key -> the flag typed
    retry_backoff: float | None = None  # None: SDCLI_RETRY_BACKOFF, else 1 s


def plan_job(request: JobRequest, settings: Settings, *, stdin: BinaryIO | None = None) -> Job:
    """The checked Job; a UsageError names the first problem (the same one `generate` names).

    The prompts are read lazily: the first one when the run starts (`first_prompt`).
    """
    words = list(request.words)
    image_values: dict[str, Any] = {}
    if request.from_image is not None:
        from sdcli.imageparams import settings_from_image

        from_png = settings_from_image(request.from_image)
        image_values = from_png.values
        if not words and request.prompts_file is None:
            words = [from_png.prompt]
    if not words and request.prompts_file is None:
        raise UsageError('give a prompt, "-" to read prompts from stdin, or --prompts-file')
    if words and request.prompts_file is not None:
        raise UsageError("give prompt words or --prompts-file, not both")
    if request.mode != "txt2img":
        raise UsageError(f"{request.mode} is not supported yet")
    from sdcli.output import DEFAULT_NAME_TEMPLATE, check_name_template
    from sdcli.payload import merge_values, parse_set
    from sdcli.presets import load_preset, validate_values

    given = validate_values(request.flags, where="command line", labels=request.flag_labels)
    sets = parse_set(request.sets)
    names = list(request.presets)
    if not names and settings.default_preset:
        names = [settings.default_preset]
    presets = [load_preset(n) for n in names]
    values = merge_values([image_values, *(p.values for p in presets), given])
    template = request.name_template or DEFAULT_NAME_TEMPLATE
    check_name_template(template)
    if request.retry_backoff is None:
        from sdcli.config import retry_backoff

        backoff = retry_backoff()
    else:
        backoff = request.retry_backoff
    job = Job(
        mode=request.mode,
        values=values,
        sets=sets,
        prompts=_prompts(words, request.prompts_file, stdin),
        preset_names=tuple(p.name for p in presets),
        output_dir=request.output_dir if request.output_dir is not None else settings.output_dir,
        name_template=template,
        overwrite=request.overwrite,
        batches=int(values.get("batch_count") or 1),
        keep_going=request.keep_going,
        retries=request.retries,
        retry_backoff=backoff,
    )
    check_job(job)
    return job


def preset_from_flags(
    flags: Mapping[str, Any],
    sets: Sequence[str] = (),
    from_image: Path | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The values of a new preset: an image's settings, then the flags (and --set as `params`)."""
    from sdcli.payload import merge_values, parse_set
    from sdcli.presets import validate_values

    given = dict(flags)
    params = parse_set(sets)
    if params:
        given["params"] = params
    given = validate_values(given, where="command line", labels=labels)
    layers: list[dict[str, Any]] = []
    if from_image is not None:
        from sdcli.imageparams import settings_from_image

        layers.append(settings_from_image(from_image, for_preset=True).values)
    return merge_values([*layers, given])


def _prompts(words: list[str], prompts_file: Path | None, stdin: BinaryIO | None) -> Iterator[str]:
    """The prompts, read when asked for; none at all is a mistake, not a no-op."""
    import io

    from sdcli.prompts import read_prompts

    source = read_prompts(words, prompts_file, stdin if stdin is not None else io.BytesIO())
    first = next(source, None)
    if first is None:
        where = f"in --prompts-file {prompts_file}" if prompts_file is not None else "on stdin"
        raise UsageError(
            f"no prompt {where}",
            hint="one prompt per line; blank lines and # comments are skipped",
        )
    yield first
    yield from source


def first_prompt(job: Job) -> Iterator[str]:
    """The job's prompts, the first one read now (a missing prompt is refused before anything
    is sent); the rest stay in `job.prompts` for whoever reads on."""
    prompts = iter(job.prompts)
    first = next(prompts, None)
    return prompts if first is None else itertools.chain([first], prompts)


def check_job(job: Job) -> None:
    """Refuse, before any request, settings the body or the server could not take."""
    from sdcli.requestcheck import check_seed_span

    job_body(job, dict(job.values), "")
    images = job.batches * int(job.values.get("batch_size") or 1)
    check_seed_span(job.values.get("seed"), images)


def job_body(
    job: Job, values: Mapping[str, Any], prompt: str, resolved: Resolved | None = None
) -> dict[str, Any]:
    """The checked request body: with the names the server spells and the defaults sdcli fills in
    (`resolved`), else the names as typed."""
    from sdcli.payload import build_payload
    from sdcli.requestcheck import check_body

    if resolved is None:
        body = build_payload(
            values,
            prompt,
            sampler_name=values.get("sampler"),
            scheduler=values.get("scheduler"),
            model_title=values.get("model"),
            sets=job.sets,
        )
    else:
        body = build_payload(
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
    check_body(body)
    return body


def resolve_for_dry_run(client: WebUIClient, job: Job) -> tuple[Resolved | None, SdcliError | None]:
    """Resolve names with the server's lists (read-only GETs); the error if it cannot answer.

    A wrong name is still a usage error (exit 2): that is what a dry run is for.
    """
    from sdcli.catalog import Catalog
    from sdcli.names.request import resolve_names

    try:
        return resolve_names(job.values, Catalog(client), job.sets), None
    except UsageError:
        raise
    except SdcliError as exc:
        return None, exc


def dry_run_bodies(
    job: Job, prompts: Iterable[str], resolved: Resolved | None
) -> Iterator[dict[str, Any]]:
    """One body per prompt, as it would be sent (names as typed when `resolved` is None)."""
    for prompt in prompts:
        yield job_body(job, dict(job.values), prompt, resolved)
