"""What a run is made of: a Job (settings, prompts, where to save) and its Units (one request each).

Pure data, no I/O: any front end (the CLI, an interactive session, a queue) builds a Job with
`sdcli.plan.plan_job` and hands it to `sdcli.run.run_job`; a queue can schedule Units on any server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sdcli.output import DEFAULT_NAME_TEMPLATE

if TYPE_CHECKING:
    from sdcli.dynprompts import DynamicPrompts
    from sdcli.sweeps import Axis

Mode = Literal["txt2img", "img2img", "extras"]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    prompts: list[tuple[str, str | None]] = [(prompt, None)]
    if job.dynamic is not None and job.dynamic.applies(prompt):
        drawn_with = None
        if isinstance(base, int) and fixed and not job.dynamic.combinatorial:
            drawn_with = [base + k * per_prompt for k in range(job.dynamic.count())]
        prompts = [(p, prompt) for p in job.dynamic.expand(prompt, drawn_with)]
    if fixed:
        from sdcli.requestcheck import check_seed_span

        check_seed_span(base, per_prompt * len(prompts))
    inits: tuple[Path | None, ...] = job.inputs if job.mode == "img2img" else (None,)
    from sdcli.sweeps import cells

    made = []
    for k, (text, template) in enumerate(prompts):
        for where, overrides in cells(job.axes):
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
                        Unit(text, n + 1, job.batches, seed, init, template, overrides, where)
                    )
    return made


def unit_values(job: Job, unit: Unit) -> dict[str, Any]:
    """The job's values with the unit's seed (a random or missing seed stays as it was) and the
    unit's own settings (an X/Y/Z plot's cell)."""
    values = dict(job.values)
    if unit.overrides:
        from sdcli.sweeps import settings_only

        values.update(settings_only(unit.overrides))
    base = values.get("seed")
    if isinstance(base, int) and base >= 0:
        # Same seeds the web UI's own batch count would give: seed + image index.
        values["seed"] = unit.seed
    return values
