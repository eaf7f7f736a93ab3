"""X/Y/Z plots: `--xy KEY=V1,V2,…` axes over any setting, parsed and checked with the preset
schema's types before anything is sent; each cell of the plot is one unit of the run.

Values are split like the web UI's X/Y/Z plot script splits them (commas, quotes for a value
that holds one) and take its ranges: `10-30 (+10)` steps through, `1-5` counts by one,
`5-9 [3]` gives 3 values evenly spaced. `prompt` is its "Prompt S/R": the first value is
searched in the prompt and replaced by each value in turn.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from sdcli.datatypes import frozen
from sdcli.errors import UsageError

if TYPE_CHECKING:
    from sdcli.job import Unit

MAX_AXES: Final = 3  # X, Y and Z
MAX_CELLS: Final = 1000  # a grid that large is a typo in a range, not a plan
AXIS_NAMES: Final = ("X", "Y", "Z")

# Keys that are no setting of one request, or that would change how units are cut.
_NOT_AXES: Final = frozenset(
    {"description", "extends", "prompt_template", "params", "batch_count", "batch_size"}
)
# What a person types for a key (the flags' words, the web UI's labels).
_KEY_ALIASES: Final = {
    "cfg": "cfg_scale",
    "denoise": "denoising_strength",
    "negative": "negative_prompt",
    "clip": "clip_skip",
    "checkpoint": "model",
    "sampler_name": "sampler",
    "style": "styles",
    "variation": "variation_seed",
}
# The label drawn on the grid, as the web UI's plot names its axes.
_LABELS: Final = {
    "steps": "Steps",
    "cfg_scale": "CFG Scale",
    "sampler": "Sampler",
    "scheduler": "Schedule type",
    "seed": "Seed",
    "model": "Checkpoint",
    "clip_skip": "Clip skip",
    "size": "Size",
    "prompt": "Prompt S/R",
    "denoising_strength": "Denoising",
    "negative_prompt": "Negative prompt",
    "hr_scale": "Hires upscale",
    "hr_upscaler": "Hires upscaler",
    "hr_steps": "Hires steps",
    "vae": "VAE",
    "styles": "Styles",
    "refiner": "Refiner checkpoint",
    "refiner_switch": "Refiner switch at",
    "variation_seed": "Var. seed",
    "variation_strength": "Var. strength",
}
# Keys whose values are names the server resolves (checked against its lists before sending).
NAME_KEYS: Final = frozenset(
    {"sampler", "scheduler", "model", "hr_upscaler", "vae", "styles", "refiner"}
)


@frozen
class Axis:
    """One axis: its key (a preset key, `size` or `prompt`), the label drawn on the grid, the
    values as typed (one label each) and the settings each value sets."""

    key: str
    label: str
    texts: tuple[str, ...]
    settings: tuple[tuple[tuple[str, Any], ...], ...]

    def __len__(self) -> int:
        return len(self.texts)


def parse_axes(
    items: Sequence[str], *, mode: str = "txt2img", sets: Mapping[str, Any] | None = None
) -> tuple[Axis, ...]:
    """The axes of `--xy` items, in order (X, Y, Z); a UsageError names the first problem."""
    if len(items) > MAX_AXES:
        raise UsageError(f"--xy takes at most {MAX_AXES} axes (X, Y and Z), got {len(items)}")
    axes: list[Axis] = []
    for item in items:
        axis = parse_axis(item, mode=mode)
        if any(a.key == axis.key for a in axes):
            raise UsageError(f"--xy {axis.key} is given twice")
        _check_not_set(axis, sets or {})
        axes.append(axis)
    total = math.prod(len(a) for a in axes)
    if total > MAX_CELLS:
        raise UsageError(
            f"--xy gives {total} cells; at most {MAX_CELLS} a prompt",
            hint="fewer values, or a range with a larger step",
        )
    return tuple(axes)


def parse_axis(item: str, *, mode: str = "txt2img") -> Axis:
    key_text, sep, raw = item.partition("=")
    typed = key_text.strip()
    if not sep or not typed:
        raise UsageError(
            f"--xy {item!r} must look like KEY=V1,V2,…", hint="e.g. --xy steps=20,30 --xy cfg=5,7"
        )
    where = f"--xy {typed}"
    if typed.startswith("params."):
        return _field_axis(typed, raw, where)
    key = _axis_key(typed, mode)
    texts = _split(raw, where)
    if key == "size":
        settings = [_size(t, where) for t in texts]
    elif key == "prompt":
        search = texts[0]
        settings = [(("prompt", (search, t)),) for t in texts]
    else:
        settings = [((key, _value(key, t, where)),) for t in texts]
        if key not in NAME_KEYS and key not in ("negative_prompt",):
            texts = [_shown(dict(s)[key]) for s in settings]
    return Axis(key, _LABELS.get(key, key), tuple(texts), tuple(tuple(s) for s in settings))


def cells(axes: Sequence[Axis]) -> list[tuple[tuple[int, ...], tuple[tuple[str, Any], ...]]]:
    """Each cell's place (its index on each axis, X first) and its settings; Z is the outer
    loop and X the inner one, so a grid fills row by row. No axes: one plain cell."""
    if not axes:
        return [((), ())]
    made = []
    for reverse in itertools.product(*(range(len(a)) for a in reversed(axes))):
        where = tuple(reversed(reverse))
        settings: list[tuple[str, Any]] = []
        for axis, i in zip(axes, where, strict=True):
            settings += axis.settings[i]
        made.append((where, tuple(settings)))
    return made


def apply_prompt(prompt: str, overrides: Sequence[tuple[str, Any]]) -> str:
    """The prompt with a Prompt S/R cell's replacement in it."""
    for key, value in overrides:
        if key == "prompt":
            search, replacement = value
            if search not in prompt:
                raise UsageError(
                    f"--xy prompt: {search!r} is not in the prompt {_short(prompt)}",
                    hint="the first value of a prompt axis is the text each value replaces",
                )
            prompt = prompt.replace(search, replacement)
    return prompt


def settings_only(overrides: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """A cell's preset values (the prompt replacement is no setting; styles are a list; a
    request field is a `params` table, kept as JSON text in the unit)."""
    import json

    from sdcli.payload import merge_values

    layers: list[dict[str, Any]] = []
    for key, value in overrides:
        if key == "params":  # several fields' axes: their tables merge
            layers.append({"params": json.loads(value)})
        elif key != "prompt":
            layers.append({key: list(value) if isinstance(value, tuple) else value})
    return merge_values(layers)


def cell_values(values: Mapping[str, Any], overrides: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The job's values with a cell's settings over them (a `params` field merged in)."""
    from sdcli.payload import merge_values

    return merge_values([values, settings_only(overrides)])


def cell_key(overrides: Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """A cell's settings, hashable: what its names are resolved (and cached) by."""
    return tuple((key, value) for key, value in overrides if key != "prompt")


def unit_fields(unit: Unit) -> dict[str, Any]:
    """What `--json` adds for an image of a sweep: the template its prompt was drawn from, and
    the X/Y/Z cell's settings (preset keys; `prompt` for a Prompt S/R replacement)."""
    fields: dict[str, Any] = {}
    if unit.template is not None:
        fields["template"] = unit.template
    if unit.cell:
        xyz: dict[str, Any] = {}
        for key, value in unit.overrides:
            if key == "params":
                xyz.update(settings_only([(key, value)])["params"])
            else:
                xyz[key] = value[1] if key == "prompt" else value
        fields["xyz"] = xyz
    return fields


def describe(axes: Sequence[Axis]) -> str:
    """The grid's parameters text: `X: Steps 20, 30; Y: CFG Scale 5, 7`."""
    return "; ".join(
        f"{name}: {axis.label} {', '.join(axis.texts)}"
        for name, axis in zip(AXIS_NAMES, axes, strict=False)
    )


# --- parsing --------------------------------------------------------------------------------


def _axis_key(typed: str, mode: str) -> str:
    from sdcli.preset_schema import PRESET_KEYS, did_you_mean_suffix

    word = typed.lower().replace("-", "_")
    key = _KEY_ALIASES.get(word, word)
    if key in ("size", "prompt"):
        return key
    spec = PRESET_KEYS.get(key)
    if spec is None or key in _NOT_AXES or (spec.img2img_only and mode != "img2img"):
        known = sorted(
            {
                k
                for k, s in PRESET_KEYS.items()
                if k not in _NOT_AXES and (mode == "img2img" or not s.img2img_only)
            }
            | {"size", "prompt", "cfg", "params.FIELD"}
        )
        why = "cannot be an axis" if spec is not None else "is no setting"
        raise UsageError(
            f"--xy {typed}: {typed!r} {why}{did_you_mean_suffix(word, known)}",
            hint="axes: " + ", ".join(known),
        )
    return key


def _split(raw: str, where: str) -> list[str]:
    """Values split at commas (a value with a comma in quotes); ranges stepped through."""
    import csv

    try:
        row = next(csv.reader([raw], skipinitialspace=True))
    except (csv.Error, StopIteration):
        row = []
    texts = [t.strip() for t in row]
    if not texts or any(not t for t in texts):
        raise UsageError(f"{where}: give one or more values, separated by commas")
    out: list[str] = []
    for text in texts:
        out += _range(text, where) or [text]
    return out


# `10-30`, `10-30 (+10)`, `5-9 [3]`; kept as text: `re` compiles it at first use
_RANGE = (
    r"^\s*([+-]?\d+(?:\.\d+)?)\s*-\s*([+-]?\d+(?:\.\d+)?)\s*"
    r"(?:\(\s*([+-]\s*\d+(?:\.\d+)?)\s*\)|\[\s*(\d+)\s*\])?\s*$"
)


def _range(text: str, where: str) -> list[str] | None:
    """`10-30 (+10)`, `1-5`, `5-9 [3]` as their values; None when `text` is no range."""
    match = re.match(_RANGE, text)
    if match is None:
        return None
    start, end, step_text, count_text = match.groups()
    is_float = any("." in t for t in (start, end, step_text or "") if t)
    low, high = float(start), float(end)
    if count_text is not None:
        count = int(count_text)
        if count < 1 or count > MAX_CELLS:
            raise UsageError(f"{where}: [{count}] must be between 1 and {MAX_CELLS} values")
        if count == 1:
            values = [low]
        else:
            values = [low + (high - low) * i / (count - 1) for i in range(count)]
        if not is_float and any(not v.is_integer() for v in values):
            is_float = True
    else:
        step = float(step_text.replace(" ", "")) if step_text else (1.0 if high >= low else -1.0)
        if step == 0 or (high - low) * step < 0:
            raise UsageError(f"{where}: the range {text!r} never reaches its end")
        n = math.floor((high - low) / step + 1e-9) + 1
        if n > MAX_CELLS:
            raise UsageError(f"{where}: the range {text!r} gives more than {MAX_CELLS} values")
        values = [low + step * i for i in range(n)]
    if is_float:
        return [_shown(round(v, 6)) for v in values]
    return [str(int(v)) for v in values]


def _value(key: str, text: str, where: str) -> Any:
    """One value as its key's type, checked by the preset schema (ranges, choices)."""
    from sdcli.preset_schema import PRESET_KEYS
    from sdcli.presets import validate_values

    spec = PRESET_KEYS[key]
    value: Any = text
    try:
        if spec.type is int:
            value = int(text)
        elif spec.type is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
        elif spec.type is bool:
            value = _bool(text)
        elif spec.type is list:
            value = [] if text.lower() == "none" else [text]
    except ValueError:
        kind = {int: "an integer", float: "a number", bool: "true or false"}[spec.type]
        raise UsageError(f"{where}: {text!r} is not {kind}") from None
    checked = validate_values({key: value}, where=where, labels={key: where}).get(key, value)
    return tuple(checked) if isinstance(checked, list) else checked  # a unit stays hashable


def _field_axis(typed: str, raw: str, where: str) -> Axis:
    """`params.FIELD=V1,V2`: any request field, each value read as `--set FIELD=V` reads it."""
    import json

    from sdcli.payload import DIRECT_FIELDS, parse_set
    from sdcli.requestcheck import check_body

    field = typed.removeprefix("params.")
    top = field.split(".")[0]
    named = {wire: key for key, wire in DIRECT_FIELDS.items()}
    named.update({"sampler_name": "sampler", "prompt": "prompt", "n_iter": "batch_count"})
    if top in named:
        raise UsageError(
            f"{where}: sdcli sets {top!r} by name, which would win over this field",
            hint=f"use --xy {named[top]}=…",
        )
    texts = _split(raw, where)
    settings = []
    for text in texts:
        table = parse_set([f"{field}={text}"])
        check_body(table)
        settings.append((("params", json.dumps(table, sort_keys=True)),))
    return Axis(typed, field, tuple(texts), tuple(settings))


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ValueError(text)


def _size(text: str, where: str) -> tuple[tuple[str, Any], ...]:
    from sdcli.payload import parse_size

    width, height = parse_size(text, where)
    return (
        ("width", _value("width", str(width), where)),
        ("height", _value("height", str(height), where)),
    )


def _check_not_set(axis: Axis, sets: Mapping[str, Any]) -> None:
    """`--set FIELD` is the last word on every request: an axis over it would change nothing."""
    from sdcli.payload import DIRECT_FIELDS

    fields = {"sampler": "sampler_name", "scheduler": "scheduler", **DIRECT_FIELDS}
    keys = {key for setting in axis.settings for key, _ in setting}
    clash = sorted(fields[k] for k in keys if k in fields and fields[k] in sets)
    if axis.key.startswith("params."):
        top = axis.key.removeprefix("params.").split(".")[0]
        clash += [top] if top in sets else []
    if clash:
        raise UsageError(
            f"--xy {axis.key}: --set {clash[0]} would override every cell",
            hint=f"drop --set {clash[0]}",
        )


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value)


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:59] + "…")
