"""The last look at a request body before it is sent, wherever its values came from (flags,
presets and their [params], --set, --from-image): what the body or the web UI cannot carry is
refused here, as a usage error, instead of failing on the server after the queue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from sdcli.errors import UsageError
from sdcli.preset_schema import MAX_SEED
from sdcli.prompts import text_problem

_SEED_FIELDS: Final = ("seed", "subseed")


def check_body(body: Mapping[str, Any]) -> None:
    """Text UTF-8 and PNG chunks can hold, finite numbers, and seeds the web UI can use."""
    problem = _problem(body, "")
    if problem is None:
        for key in _SEED_FIELDS:
            problem = _seed_problem(key, body.get(key))
            if problem is not None:
                break
    if problem is not None:
        raise UsageError(f"request field {problem}")


def check_seed_span(seed: Any, images: int) -> None:
    """With --count, the seeds go on: seed, seed+1, …; the last one must still be a seed."""
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        last = seed + images - 1
        if last > MAX_SEED:
            raise UsageError(
                f"seed {seed} with {images} images (count x batch size) would go past the "
                f"largest seed, {MAX_SEED} (the web UI's seeds are 32-bit)",
                hint=f"use a seed of at most {MAX_SEED - images + 1}",
            )


def _problem(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        problem = text_problem(value)
        return f"'{where}' {problem}" if problem else None
    if isinstance(value, float) and not math.isfinite(value):
        return f"'{where}' must be a finite number, got {value}"
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            name_problem = text_problem(str(key))
            if name_problem:
                return f"name {path!r} {name_problem}"
            problem = _problem(item, path)
            if problem:
                return problem
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _problem(item, f"{where}[{index}]")
            if problem:
                return problem
    return None


def _seed_problem(key: str, value: Any) -> str | None:
    if value is None or isinstance(value, bool | str):
        return None  # text is the server's to parse (a 422 if it is no integer)
    if isinstance(value, float) and not value.is_integer():
        return f"'{key}' must be a whole number, got {value}"
    if isinstance(value, int | float) and not -1 <= value <= MAX_SEED:
        shown = int(value) if isinstance(value, float) else value
        return (
            f"'{key}' must be between -1 and {MAX_SEED} (the web UI's seeds are 32-bit), "
            f"got {shown}"
        )
    return None
