"""What a run is made of: a Job (settings, prompts, where to save) and its Units (one request each).

Pure data, no I/O: any front end (the CLI, an interactive session, a queue) builds a Job with
`sdcli.plan.plan_job` and hands it to `sdcli.run.run_job`; a queue can schedule Units on any server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sdcli.output import DEFAULT_NAME_TEMPLATE

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


@dataclass(frozen=True)
class Unit:
    """One request: batch `batch` of `batches` (1-based) for `prompt`, starting at `seed`."""

    prompt: str
    batch: int
    batches: int
    seed: int | None  # None, or -1 (random), when the job's seed is not a fixed one
    init: Path | None = None  # img2img: the input image this request starts from


def units(job: Job, prompt: str) -> list[Unit]:
    """The requests for one prompt, with the seeds the web UI's own batch count would give;
    img2img repeats them for each input image in turn (the same seeds for each)."""
    base = job.values.get("seed")
    size = int(job.values.get("batch_size") or 1)
    inits: tuple[Path | None, ...] = job.inputs if job.mode == "img2img" else (None,)
    if isinstance(base, int) and base >= 0:
        seeds: list[int | None] = [base + n * size for n in range(job.batches)]
    else:
        seeds = [base] * job.batches
    return [
        Unit(prompt, n + 1, job.batches, seed, init)
        for init in inits
        for n, seed in enumerate(seeds)
    ]


def unit_values(job: Job, unit: Unit) -> dict[str, Any]:
    """The job's values with the unit's seed (a random or missing seed stays as it was)."""
    values = dict(job.values)
    base = values.get("seed")
    if isinstance(base, int) and base >= 0:
        # Same seeds the web UI's own batch count would give: seed + image index.
        values["seed"] = unit.seed
    return values
