"""From what a front end parsed to a checked Job: presets, flags, --set and --from-image layered.

Every front end (the CLI today, an interactive session or a queue next) builds a JobRequest and
calls `plan_job`; nothing is sent to a server here. The request bodies are built here too, so a
dry run and a real run send the same thing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sdcli.datatypes import frozen
from sdcli.errors import SdcliError, UsageError
from sdcli.job import Job, Mode, Unit

if TYPE_CHECKING:
    from sdcli.catalog import Catalog
    from sdcli.client import WebUIClient
    from sdcli.config import Settings
    from sdcli.dynprompts import DynamicPrompts
    from sdcli.history.replay import Recorded
    from sdcli.names.request import Resolved
    from sdcli.sweeps import Axis


@frozen
class JobRequest:
    """What a front end parsed; nothing checked yet. `flags` are preset keys (`cfg_scale`)."""

    words: Sequence[str] = ()  # prompt words, joined with spaces; ["-"]: one prompt a line of stdin
    prompts_file: Path | None = None
    presets: Sequence[str] = ()  # none given: the configured default preset
    flags: Mapping[str, Any] = field(default_factory=dict)
    sets: Sequence[str] = ()  # KEY=VALUE items of --set
    from_image: Path | None = None
    # A request recorded in the history (`sdcli rerun`): its body is the bottom layer, its
    # prompt the default one, and the configured default preset is not added on top.
    recorded: Recorded | None = None
    mode: Mode = "txt2img"
    output_dir: Path | None = None  # None: the configured one
    name_template: str | None = None
    overwrite: bool = False
    keep_going: bool = False
    retries: int = 0
    flag_labels: Mapping[str, str] = field(default_factory=dict)  # key -> the flag typed
    inputs: Sequence[Path] = ()  # img2img: init images, files or directories
    mask: Path | None = None  # img2img: an inpainting mask of the init images' size
    retry_backoff: float | None = None  # None: SDCLI_RETRY_BACKOFF, else 1 s
    # dynamic prompts (sdcli.dynprompts): None expands prompts that use the syntax, True every
    # prompt, False none; how many prompts a template gives; every combination; wildcard files
    dynamic: bool | None = None
    variants: int | None = None
    combinatorial: bool = False
    wildcards: Path | None = None  # None: the configured directory
    xy: Sequence[str] = ()  # X/Y/Z plot axes, KEY=V1,V2,… (sdcli.sweeps)


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
    if request.recorded is not None:
        if request.from_image is not None:
            raise UsageError("give --from-image or a generation to re-run, not both")
        from sdcli.history.replay import values_from_body

        image_values = values_from_body(request.recorded)
        if not words and request.prompts_file is None:
            words = [str(request.recorded.body.get("prompt", ""))]
    if not words and request.prompts_file is None:
        raise UsageError('give a prompt, "-" to read prompts from stdin, or --prompts-file')
    if words and request.prompts_file is not None:
        raise UsageError("give prompt words or --prompts-file, not both")
    if request.mode not in ("txt2img", "img2img"):
        raise UsageError(f"{request.mode} is not supported yet")
    inputs: tuple[Path, ...] = ()
    if request.mode == "img2img":
        inputs = check_init_images(request.inputs, request.mask)
    from sdcli.output import DEFAULT_NAME_TEMPLATE, check_name_template
    from sdcli.payload import merge_values, parse_set
    from sdcli.presets import load_preset, validate_values

    given = validate_values(request.flags, where="command line", labels=request.flag_labels)
    sets = parse_set(request.sets)
    names = list(request.presets)
    if not names and settings.default_preset and request.recorded is None:
        names = [settings.default_preset]
    presets = [load_preset(n) for n in names]
    values = merge_values([image_values, *(p.values for p in presets), given])
    default_template = IMG2IMG_NAME_TEMPLATE if request.mode == "img2img" else DEFAULT_NAME_TEMPLATE
    template = request.name_template or default_template
    check_name_template(template)
    dynamic = _dynamic(request, settings)
    negative = values.get("negative_prompt")
    if dynamic is not None and isinstance(negative, str) and dynamic.applies(negative):
        dynamic.check(negative, "the negative prompt")
    axes: tuple[Axis, ...] = ()
    if request.xy:
        from sdcli.sweeps import parse_axes

        axes = parse_axes(request.xy, mode=request.mode, sets=sets)
        if not any(a.key == "seed" for a in axes):
            values = fixed_seed(values)
    if request.retry_backoff is None:
        from sdcli.config import retry_backoff

        backoff = retry_backoff()
    else:
        backoff = request.retry_backoff
    job = Job(
        mode=request.mode,
        values=values,
        sets=sets,
        prompts=_checked(_prompts(words, request.prompts_file, stdin), dynamic),
        preset_names=tuple(p.name for p in presets),
        inputs=inputs,
        mask=request.mask,
        output_dir=request.output_dir if request.output_dir is not None else settings.output_dir,
        name_template=template,
        overwrite=request.overwrite,
        batches=int(values.get("batch_count") or 1),
        keep_going=request.keep_going,
        retries=request.retries,
        retry_backoff=backoff,
        dynamic=dynamic,
        axes=axes,
    )
    check_job(job)
    return job


def _dynamic(request: JobRequest, settings: Settings) -> DynamicPrompts | None:
    """How templates become prompts; None when --no-dynamic sends every prompt as typed."""
    if request.dynamic is False:
        if request.combinatorial or request.variants is not None:
            flag = "--combinatorial" if request.combinatorial else "--variants"
            raise UsageError(f"{flag} expands dynamic prompts, and --no-dynamic turns them off")
        return None
    from sdcli.config import default_wildcards_dir
    from sdcli.dynprompts import MAX_VARIANTS, DynamicPrompts

    if request.variants is not None and not 1 <= request.variants <= MAX_VARIANTS:
        raise UsageError(f"--variants must be between 1 and {MAX_VARIANTS}, got {request.variants}")
    directory = request.wildcards or settings.wildcards_dir or default_wildcards_dir()
    given = request.wildcards is not None or settings.wildcards_source != "default"
    if given and not directory.is_dir():
        where = "--wildcards" if request.wildcards is not None else "the wildcards directory"
        raise UsageError(f"{where} {directory} is not a directory")
    return DynamicPrompts(
        wildcards=directory,
        wildcards_given=given,
        switch="on" if request.dynamic else "auto",
        combinatorial=request.combinatorial,
        variants=request.variants,
    )


def fixed_seed(values: Mapping[str, Any]) -> dict[str, Any]:
    """A random seed drawn here, as the web UI's X/Y/Z plot does: every cell gets the same one,
    so the cells differ only by their settings."""
    seed = values.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        return dict(values)
    import random

    return {**values, "seed": random.randrange(2**32 - 1)}


def _checked(prompts: Iterator[str], dynamic: DynamicPrompts | None) -> Iterator[str]:
    """Each template checked as it is read (syntax, wildcard files): a bad one is refused
    before any of its requests is sent."""
    for prompt in prompts:
        if dynamic is not None and dynamic.applies(prompt):
            dynamic.check(prompt)
        yield prompt


IMG2IMG_NAME_TEMPLATE = "{date}-{time}-{index}-{init}-{seed}"
"""img2img's default file names say which input each image came from."""


def check_init_images(paths: Sequence[Path], mask: Path | None) -> tuple[Path, ...]:
    """The init image files (directories expanded), each read and checked, and the mask of the
    same size as every one of them: the web UI would silently stretch a mask of another size."""
    from sdcli.inputs import read_image, read_images

    if not paths:
        raise UsageError("img2img needs --init IMAGE (a file, several, or a directory)")
    images = read_images(paths, what="init image")
    if mask is not None:
        shape = read_image(mask)
        for image in images:
            if (image.width, image.height) != (shape.width, shape.height):
                raise UsageError(
                    f"the mask {mask} is {shape.width}x{shape.height}, but the init image "
                    f"{image.path} is {image.width}x{image.height}",
                    hint="a mask must have the size of the image it masks",
                )
    return tuple(image.path for image in images)


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


def lists_needed(job: Job, asked: Callable[[str], bool]) -> list[str]:
    """The lists a run of `job` is sure to ask for before its first request (`resolve_names`
    and the embedding check of `Runner.body`), so they can be asked for at once
    (`Catalog.prefetch`). Only what it always asks: a key here that the run never asks for
    would be a request it never made before.

    `asked(key)`: whether that list would be asked of the server (`Catalog.asks`); only those
    are returned. The embeddings, which take building the body to know, are looked at only
    when another list is asked too: one request alone has nothing to wait for at once (and a
    warm run builds nothing here)."""
    values = job.values
    sampler, scheduler = values.get("sampler"), values.get("scheduler")
    keys = []
    if sampler or scheduler or values.get("clip_skip") is not None:
        keys.append("sdnext")
    if sampler or scheduler:
        keys += ["schedulers", "samplers"]
    if values.get("model"):
        keys.append("models")
    keys = [key for key in keys if asked(key)]
    # Every unit's negative prompt is the job's unless drawn from a dynamic one or changed by a
    # plot's cell; a name-like word in it makes the first unit ask for the embeddings.
    if keys and not job.axes and asked("embeddings"):
        from sdcli.names.embeddings import worth_asking

        typed, dynamic = values.get("negative_prompt"), job.dynamic
        drawn = isinstance(typed, str) and dynamic is not None and dynamic.applies(typed)
        negative = job_body(job, values, "").get("negative_prompt")
        if not drawn and isinstance(negative, str) and worth_asking([negative]):
            keys.append("embeddings")
    return keys


def check_job(job: Job) -> None:
    """Refuse, before any request, settings the body or the server could not take."""
    from sdcli.requestcheck import check_seed_span

    job_body(job, dict(job.values), "")
    if job.axes:
        from sdcli.sweeps import cell_values, cells

        for _, overrides in cells(job.axes):
            job_body(job, cell_values(job.values, overrides), "")
    if job.values.get("upscale"):  # `--upscale NAME:2`: its form, before anything is sent
        from sdcli.payload import parse_upscale

        parse_upscale(str(job.values["upscale"]))
    images = job.batches * int(job.values.get("batch_size") or 1)
    check_seed_span(job.values.get("seed"), images)


def job_body(
    job: Job,
    values: Mapping[str, Any],
    prompt: str,
    resolved: Resolved | None = None,
    unit: Unit | None = None,
    *,
    shown: bool = False,
) -> dict[str, Any]:
    """The checked request body: with the names the server spells and the defaults sdcli fills in
    (`resolved`), else the names as typed; img2img's with the unit's init image (and mask), or
    with what stands for them on a screen (`shown`)."""
    from sdcli.payload import build_payload
    from sdcli.preset_schema import PRESET_KEYS
    from sdcli.requestcheck import check_body

    if unit is not None and unit.overrides:
        from sdcli.sweeps import apply_prompt

        prompt = apply_prompt(prompt, unit.overrides)
    if job.mode != "img2img":  # a preset's img2img keys mean nothing to txt2img
        values = {k: v for k, v in values.items() if not _img2img_only(k, PRESET_KEYS)}
    elif unit is not None and unit.init is not None:
        values = {**values, **_init_size(values, job.sets, unit.init)}

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
    if job.mode == "img2img" and unit is not None and unit.init is not None:
        body.update(_init_fields(job, unit.init, body, shown=shown))
    return body


def _img2img_only(key: str, keys: Mapping[str, Any]) -> bool:
    spec = keys.get(key)
    return bool(spec is not None and spec.img2img_only)


def _init_size(values: Mapping[str, Any], sets: Mapping[str, Any], init: Path) -> dict[str, Any]:
    """No size given: the init image's, each side rounded to a multiple of 8 (the web UI
    would make a 512x512 image of any init image)."""
    if "width" in values or "height" in values or "width" in sets or "height" in sets:
        return {}
    from sdcli.inputs import read_image

    image = read_image(init)
    return {"width": round_to_8(image.width), "height": round_to_8(image.height)}


def round_to_8(side: int) -> int:
    return max(64, min(2048, (side + 4) // 8 * 8))


def _init_fields(
    job: Job, init: Path, body: Mapping[str, Any], *, shown: bool = False
) -> dict[str, Any]:
    """init_images (and mask) as the files are, base64, or `shown` as what they stand for; a
    mask repaints the whole picture unless asked otherwise (the API's own default is "only
    masked", unlike the web UI's)."""
    from sdcli.apiparse import encode_image

    def image(path: Path) -> str:
        if shown:  # megabytes of base64 on a screen tell nobody anything
            return f"<base64 of {path}, {path.stat().st_size} bytes>"
        return encode_image(path.read_bytes())

    fields: dict[str, Any] = {"init_images": [image(init)]}
    if job.mask is not None:
        fields["mask"] = image(job.mask)
        if "inpaint_full_res" not in body:
            fields["inpaint_full_res"] = False
    return fields


def resolve_for_dry_run(
    client: WebUIClient, job: Job
) -> tuple[Resolved | None, SdcliError | None, Cells]:
    """Resolve names with the server's lists (read-only GETs); the error if it cannot answer.

    A wrong name is still a usage error (exit 2): that is what a dry run is for.
    """
    from sdcli.catalog import Catalog
    from sdcli.names.request import resolve_names

    catalog = Catalog(client)
    try:
        return resolve_names(job.values, catalog, job.sets), None, resolve_cells(job, catalog)
    except UsageError:
        raise
    except SdcliError as exc:
        return None, exc, {}


Cells = dict[tuple[tuple[str, Any], ...], "Resolved"]


def resolve_cells(job: Job, catalog: Catalog) -> Cells:
    """The names of every X/Y/Z cell resolved (a sampler axis, a model axis…), before the
    first request: a wrong name in any cell stops the run before anything is sent."""
    if not job.axes:
        return {}
    from sdcli.names.request import resolve_names
    from sdcli.sweeps import cell_key, cell_values, cells

    resolved: Cells = {}
    for _, overrides in cells(job.axes):
        key = cell_key(overrides)
        if key not in resolved:
            values = cell_values(job.values, overrides)
            resolved[key] = resolve_names(values, catalog, job.sets)
    return resolved


def unit_names(cells: Cells, unit: Unit, default: Resolved) -> Resolved:
    """The names a unit's request uses: its cell's, else the job's."""
    if not unit.overrides:
        return default
    from sdcli.sweeps import cell_key

    return cells.get(cell_key(unit.overrides), default)


def dry_run_bodies(
    job: Job, prompts: Iterable[str], resolved: Resolved | None, cells: Cells | None = None
) -> Iterator[dict[str, Any]]:
    """One body per prompt, as it would be sent (names as typed when `resolved` is None): per
    prompt a template gives, per X/Y/Z cell and per init image; the first batch's, each image
    shown by name and size rather than as base64."""
    from sdcli.job import unit_values, units

    for prompt in prompts:
        for unit in units(job, prompt):
            if unit.batch != 1:
                continue
            names = unit_names(cells or {}, unit, resolved) if resolved is not None else None
            yield job_body(job, unit_values(job, unit), unit.prompt, names, unit, shown=True)
