"""What a run is made of: a Job (settings, prompts, where to save) and its Units (one request each).

Pure data, no I/O: any front end (the CLI, an interactive session, a queue) builds a Job with
`sdcli.plan.plan_job` and hands it to `sdcli.run.run_job`; a queue can schedule Units on any server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sdcli.datatypes import frozen
from sdcli.output import DEFAULT_NAME_TEMPLATE

if TYPE_CHECKING:
    from sdcli.dynprompts import DynamicPrompts
    from sdcli.sweeps import Axis

Mode = Literal["txt2img", "img2img", "extras"]


@frozen
class Job:
    """Everything decided before talking to a server; `prompts` is read lazily, once."""

    mode: Mode
    values: Mapping[str, Any]  # merged preset + flag values (user-facing preset keys)
    sets: Mapping[str, Any]  # --set, request field names
    prompts: Iterable[str]
    preset_names: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()  # the images img2img and extras start from
    mask: Path | None = None  # img2img: the inpainting mask (white: repaint), one for every input
    output_dir: Path = Path(".")
    name_template: str = DEFAULT_NAME_TEMPLATE
    overwrite: bool = False
    batches: int = 1  # requests in a row per prompt (--count, the web UI's batch count)
    keep_going: bool = False
    retries: int = 0
    retry_backoff: float = 1.0
    dynamic: DynamicPrompts | None = None  # templates -> prompts (sdcli.dynprompts)
    axes: tuple[Axis, ...] = ()  # X/Y/Z plot: each cell a unit of its own (sdcli.sweeps)


@frozen
class Unit:
    """One request: batch `batch` of `batches` (1-based) for `prompt`, starting at `seed`."""

    prompt: str
    batch: int
    batches: int
    seed: int | None  # None, or -1 (random), when the job's seed is not a fixed one
    init: Path | None = None  # img2img: the input image this request starts from
    template: str | None = None  # a dynamic prompt's template, `prompt` one drawn from it
    # X/Y/Z plot: this cell's settings (preset keys), over the job's values; and where the
    # cell is (its value's index on each axis, X first)
    overrides: tuple[tuple[str, Any], ...] = ()
    cell: tuple[int, ...] = ()
    negative_prompt: str | None = None  # one drawn from a dynamic negative prompt (None: as set)
    # The {index} of the unit's first image, fixed when a run journal plans the unit (so a
    # resumed run names its images as planned); None: the Saver counts images as they come.
    index: int | None = None


def units(job: Job, prompt: str) -> list[Unit]:
    """The requests for one prompt, with the seeds the web UI's own batch count would give;
    img2img repeats them for each input image in turn (the same seeds for each).

    A dynamic prompt gives several prompts, and their images take the seeds that follow (as in
    the Dynamic Prompts extension: seed, seed+1, …); an X/Y/Z plot gives every cell the same
    seeds, as the web UI's plot does."""
    base = job.values.get("seed")
    size = int(job.values.get("batch_size") or 1)
    fixed = isinstance(base, int) and not isinstance(base, bool) and base >= 0
    per_prompt = job.batches * size  # the images of one prompt's batches, per cell
    prompts = _drawn(job, prompt, base if fixed else None, per_prompt)
    if fixed:
        from sdcli.requestcheck import check_seed_span

        check_seed_span(base, per_prompt * len(prompts))
    inits: tuple[Path | None, ...] = job.inputs if job.mode == "img2img" else (None,)
    plain: list[tuple[tuple[int, ...], tuple[tuple[str, Any], ...]]] = [((), ())]
    if job.axes:
        from sdcli.sweeps import cells

        plain = cells(job.axes)
    made = []
    for k, (text, template, negative) in enumerate(prompts):
        for where, overrides in plain:
            start = dict(overrides).get("seed", base)
            if isinstance(start, int) and not isinstance(start, bool) and start >= 0:
                if start is not base:
                    from sdcli.requestcheck import check_seed_span

                    check_seed_span(start, per_prompt * len(prompts))
                first = start + k * per_prompt if fixed else start
                seeds: list[int | None] = [first + n * size for n in range(job.batches)]
            else:
                seeds = [start] * job.batches
            for init in inits:
                for n, seed in enumerate(seeds):
                    made.append(
                        Unit(
                            text,
                            n + 1,
                            job.batches,
                            seed,
                            init,
                            template,
                            overrides,
                            where,
                            negative,
                        )
                    )
    return made


def _drawn(
    job: Job, prompt: str, base: int | None, per_prompt: int
) -> list[tuple[str, str | None, str | None]]:
    """The prompts a template gives: (prompt, its template, a drawn negative prompt or None).

    As in the Dynamic Prompts extension, a dynamic negative prompt is drawn too: with the
    same seed as its prompt (random), or in every pair of prompt and negative prompt
    (--combinatorial)."""
    from sdcli.dynprompts import COMBINATORIAL_CAP
    from sdcli.errors import UsageError

    dynamic = job.dynamic
    negative = job.values.get("negative_prompt")
    if dynamic is None:
        return [(prompt, None, None)]
    positive = dynamic.applies(prompt)
    minus = negative if isinstance(negative, str) and dynamic.applies(negative) else None
    if not positive and minus is None:
        return [(prompt, None, None)]
    template = prompt if positive else None
    if dynamic.combinatorial:
        texts = dynamic.expand(prompt, None) if positive else [prompt]
        negatives: list[str | None] = [None]
        if minus is not None:
            negatives = list(dynamic.expand(minus, None))
        pairs = [(t, n) for t in texts for n in negatives]
        if len(pairs) > COMBINATORIAL_CAP and dynamic.variants is None:
            raise UsageError(
                f"the prompt and the negative prompt give {len(pairs)} pairs with "
                f"--combinatorial, more than {COMBINATORIAL_CAP}",
                hint="--variants N takes the first N",
            )
        return [(t, template, n) for t, n in pairs[: dynamic.variants or len(pairs)]]
    count = dynamic.count()
    seeds = None if base is None else [base + k * per_prompt for k in range(count)]
    texts = dynamic.expand(prompt, seeds) if positive else [prompt] * count
    negatives = [None] * count
    if minus is not None:
        negatives = list(dynamic.expand(minus, seeds))
    return [(t, template, n) for t, n in zip(texts, negatives, strict=True)]


def unit_values(job: Job, unit: Unit) -> dict[str, Any]:
    """The job's values with the unit's seed (a random or missing seed stays as it was) and the
    unit's own settings (an X/Y/Z plot's cell)."""
    values = dict(job.values)
    if unit.negative_prompt is not None:
        values["negative_prompt"] = unit.negative_prompt
    if unit.overrides:
        from sdcli.sweeps import cell_values

        values = cell_values(values, unit.overrides)
    if isinstance(unit.seed, int) and unit.seed >= 0:
        # Same seeds the web UI's own batch count would give: seed + image index; or the seed
        # a run journal drew for a random one, so a resumed run makes the planned images.
        values["seed"] = unit.seed
    return values
