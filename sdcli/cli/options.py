"""The value flags `generate` and `presets new` share: declared once, turned into values once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli.completion import complete_model, complete_sampler
from sdcli.errors import UsageError

Negative = Annotated[str | None, typer.Option("--negative", "-n", help="Negative prompt.")]
Steps = Annotated[int | None, typer.Option("--steps", help="Sampling steps.")]
Cfg = Annotated[float | None, typer.Option("--cfg", help="CFG scale.")]
SamplerOpt = Annotated[
    str | None,
    typer.Option(
        "--sampler",
        help='Sampler, e.g. "Euler a" or "DPM++ 2M Karras".',
        autocompletion=complete_sampler,
    ),
]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help='Schedule type, e.g. "Karras" (web UI 1.9+).')
]
ClipSkip = Annotated[int | None, typer.Option("--clip-skip", help="Clip skip (1-12).")]
Width = Annotated[int | None, typer.Option("--width", "-W", help="Width in pixels.")]
Height = Annotated[int | None, typer.Option("--height", "-H", help="Height in pixels.")]
Size = Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT, e.g. 512x768.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed; -1 for random.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", "-b", help="Images per batch.")]
Count = Annotated[int | None, typer.Option("--count", "-c", help="Batches in a row, per prompt.")]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Checkpoint to use, per request; short names resolve.",
        autocompletion=complete_model,
    ),
]
FromImage = Annotated[
    Path | None,
    typer.Option(
        "--from-image", help="Start from the parameters stored in this image (PNG, JPEG, WebP)."
    ),
]


# preset key -> the flag that sets it, so a bad value is reported as the user typed it
FLAG_LABELS = {
    "negative_prompt": "--negative",
    "steps": "--steps",
    "cfg_scale": "--cfg",
    "sampler": "--sampler",
    "scheduler": "--scheduler",
    "clip_skip": "--clip-skip",
    "width": "--width",
    "height": "--height",
    "seed": "--seed",
    "batch_size": "--batch-size",
    "batch_count": "--count",
    "model": "--model",
    "description": "--description",
    "extends": "--extends",
    "prompt_template": "--prompt-template",
}


def parse_size(size: str) -> tuple[int, int]:
    w, sep, h = size.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise UsageError(f"--size {size!r} must look like WIDTHxHEIGHT, e.g. 512x768")
    return int(w), int(h)


def value_flags(
    *,
    negative: str | None,
    steps: int | None,
    cfg: float | None,
    sampler: str | None,
    scheduler: str | None,
    clip_skip: int | None,
    width: int | None,
    height: int | None,
    size: str | None,
    seed: int | None,
    batch_size: int | None,
    count: int | None,
    model: str | None,
) -> dict[str, Any]:
    """The flags a user gave, under preset key names (None: not given)."""
    flags: dict[str, Any] = {
        "negative_prompt": negative,
        "steps": steps,
        "cfg_scale": cfg,
        "sampler": sampler,
        "scheduler": scheduler,
        "clip_skip": clip_skip,
        "width": width,
        "height": height,
        "seed": seed,
        "batch_size": batch_size,
        "batch_count": count,
        "model": model,
    }
    if size is not None:
        flags["width"], flags["height"] = parse_size(size)
    return {k: v for k, v in flags.items() if v is not None}
