"""The preset schema: which keys a preset may hold, what each accepts, and the checks (with a
"did you mean") that name the file and the key; kept apart so the rules read in one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any, Final, Literal

from sdcli.datatypes import frozen
from sdcli.errors import PresetError


@frozen
class KeySpec:
    """What one preset key accepts, and the command-line flag that sets it, if any: the flags of
    `generate` and `presets new` are built from these (sdcli.cli.options), so they cannot drift."""

    type: type  # str, int, float (an int is accepted too) or dict (a TOML table)
    help: str  # also the flag's help, with a capital letter and the range added
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    non_empty: bool = False
    ui_limit: bool = False  # the maximum is the web UI's slider: `--set FIELD=N` may go past it
    flag: str | None = None  # "--cfg": a value flag of generate and presets new; None: none
    short: str | None = None  # "-n"
    complete: Literal["model", "sampler"] | None = None  # names the server completes on Tab
    choices: tuple[str, ...] = ()  # the words a string key accepts (sent as the server's value)
    img2img_only: bool = False  # a flag of `img2img` (and `presets new`), not of `generate`


# Upper bounds are the web UI's own (v1.10.1): its API takes any number, but its sliders stop at
# 150 steps, CFG 30, 2048 pixels, batch size 8 and batch count 100 (`modules/ui.py`,
# `processing_scripts/sampler.py`), and its seeds are 32-bit: `processing.get_fixed_seed` draws
# them below 2**32 (torch would take 64 bits; above that the job fails with a 500 after queueing).
# `--set` is the last word and may go past the sliders, but never past MAX_SEED.
MAX_SEED: Final = 2**32 - 1

# The order here is the order `dumps_preset` writes keys in.
PRESET_KEYS: Final[dict[str, KeySpec]] = {
    "description": KeySpec(str, "one line shown by `sdcli presets list`"),
    "extends": KeySpec(str, "name of a preset to start from; this file's keys win", non_empty=True),
    "prompt_template": KeySpec(str, "text around the prompt; must contain {prompt}"),
    "negative_prompt": KeySpec(
        str, "what the image should not contain", flag="--negative", short="-n"
    ),
    "sampler": KeySpec(
        str,
        'sampler name, e.g. "DPM++ 2M" or "Euler a"',
        non_empty=True,
        flag="--sampler",
        complete="sampler",
    ),
    "scheduler": KeySpec(
        str, 'schedule type, e.g. "Karras" (web UI 1.9+)', non_empty=True, flag="--scheduler"
    ),
    "steps": KeySpec(int, "sampling steps", minimum=1, maximum=150, ui_limit=True, flag="--steps"),
    "cfg_scale": KeySpec(
        float, "CFG scale: how strongly the prompt is followed", 0, 30, ui_limit=True, flag="--cfg"
    ),
    "clip_skip": KeySpec(
        int,
        "CLIP layers to skip at the end; 1 skips none",
        minimum=1,
        maximum=12,
        flag="--clip-skip",
    ),
    "width": KeySpec(
        int,
        "image width in pixels",
        64,
        2048,
        multiple_of=8,
        ui_limit=True,
        flag="--width",
        short="-W",
    ),
    "height": KeySpec(
        int,
        "image height in pixels",
        64,
        2048,
        multiple_of=8,
        ui_limit=True,
        flag="--height",
        short="-H",
    ),
    "seed": KeySpec(int, "seed; -1 for a random one", minimum=-1, maximum=MAX_SEED, flag="--seed"),
    "batch_size": KeySpec(
        int,
        "images generated together in one batch",
        minimum=1,
        maximum=8,
        ui_limit=True,
        flag="--batch-size",
        short="-b",
    ),
    "batch_count": KeySpec(
        int,
        "batches run one after another, per prompt",
        minimum=1,
        maximum=100,
        flag="--count",
        short="-c",
    ),
    "model": KeySpec(
        str,
        "checkpoint to use for this request; short names resolve",
        non_empty=True,
        flag="--model",
        complete="model",
    ),
    "denoising_strength": KeySpec(
        float, "0 keeps the input image, 1 ignores it (img2img, hires fix)", 0, 1, flag="--denoise"
    ),
    "resize_mode": KeySpec(
        str,
        "img2img: how an init image of another size is fitted: just (stretch), crop, fill, latent",
        choices=("just", "crop", "fill", "latent"),
        flag="--resize-mode",
        img2img_only=True,
    ),
    "mask_blur": KeySpec(
        int, "inpainting: mask blur in pixels", 0, 64, flag="--mask-blur", img2img_only=True
    ),
    "inpaint_fill": KeySpec(
        str,
        "inpainting: what the masked area starts from: fill, original, noise, nothing",
        choices=("fill", "original", "noise", "nothing"),
        flag="--inpaint-fill",
        img2img_only=True,
    ),
    "inpaint_area": KeySpec(
        str,
        "inpainting: repaint the whole picture or only the masked area, at full resolution",
        choices=("whole", "masked"),
        flag="--inpaint-area",
        img2img_only=True,
    ),
    "mask_padding": KeySpec(
        int,
        "inpainting, --inpaint-area masked: pixels around the mask",
        0,
        256,
        flag="--mask-padding",
        img2img_only=True,
    ),
    "invert_mask": KeySpec(
        bool,
        "inpainting: repaint what the mask leaves black",
        flag="--invert-mask",
        img2img_only=True,
    ),
    "hires": KeySpec(bool, "hires fix: a second, larger pass", flag="--hires"),
    "hr_scale": KeySpec(
        float, "hires fix: size factor of the second pass", 1, 4, flag="--hr-scale"
    ),
    "hr_size": KeySpec(
        str,
        "hires fix: the second pass's size, WIDTHxHEIGHT (instead of --hr-scale)",
        non_empty=True,
        flag="--hr-size",
    ),
    "hr_upscaler": KeySpec(
        str,
        "hires fix: upscaler (`sdcli upscalers`), resolved like samplers",
        non_empty=True,
        flag="--hr-upscaler",
    ),
    "hr_steps": KeySpec(
        int,
        "hires fix: steps of the second pass; 0: as many as the first",
        0,
        150,
        flag="--hr-steps",
    ),
    "upscale": KeySpec(
        str,
        "after generating, each image upscaled on the server (extras) and saved in its place: "
        "NAME, NAME:SCALE or NAME:WxH (`sdcli upscalers`), e.g. 'R-ESRGAN 4x+:2'",
        non_empty=True,
        flag="--upscale",
    ),
    "vae": KeySpec(
        str, "VAE for this request (`sdcli vaes`; Automatic, None)", non_empty=True, flag="--vae"
    ),
    "styles": KeySpec(list, "prompt styles to apply (`sdcli styles`); repeatable", flag="--style"),
    "refiner": KeySpec(
        str, "refiner checkpoint, resolved like --model", non_empty=True, flag="--refiner"
    ),
    "refiner_switch": KeySpec(
        float,
        "when the refiner takes over, as a share of the steps",
        0,
        1,
        flag="--refiner-switch",
    ),
    "restore_faces": KeySpec(bool, "run the server's face restorer", flag="--restore-faces"),
    "tiling": KeySpec(bool, "make a seamless, tileable image", flag="--tiling"),
    "variation_seed": KeySpec(
        int, "variation seed; -1 for a random one", -1, MAX_SEED, flag="--variation-seed"
    ),
    "variation_strength": KeySpec(
        float, "how far toward the variation seed", 0, 1, flag="--variation-strength"
    ),
    "params": KeySpec(dict, "any other web UI request fields, sent as they are"),
}


def flag_label(key: str) -> str:
    """The flag that sets `key`, as the user typed it: `cfg_scale` -> `--cfg`, else `--key-name`,
    so a bad value is reported in the user's words."""
    spec = PRESET_KEYS.get(key)
    return (spec.flag if spec and spec.flag else None) or "--" + key.replace("_", "-")


# preset key -> its flag, for validate_values(labels=...)
FLAG_LABELS: Final = {key: flag_label(key) for key in PRESET_KEYS}

# Names people type from the web UI or its API; they make better "did you mean" answers.
_ALIASES: Final[dict[str, str]] = {
    "sampler_name": "sampler",
    "sampler_index": "sampler",
    "schedule_type": "scheduler",
    "n_iter": "batch_count",
    "cfg": "cfg_scale",
    "guidance_scale": "cfg_scale",
    "clip": "clip_skip",
    "clip_stop_at_last_layers": "clip_skip",
    "negative": "negative_prompt",
    "checkpoint": "model",
    "sd_model_checkpoint": "model",
    "denoise": "denoising_strength",
    "prompt": "prompt_template",
    "template": "prompt_template",
    "inherits": "extends",
    "parent": "extends",
    "size": "width' and 'height",  # the web UI's "Size: 512x768" is two keys here
}

_TYPE_WORDS: Final[dict[type, str]] = {
    bool: "true or false",
    list: "an array of strings",
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "a table",
}


def validate_values(
    values: Mapping[str, Any], *, where: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Check keys, types and ranges; return a clean copy. `where` names the file or the flag.

    `labels` names a key the way the user typed it (`cfg_scale` -> `--cfg`), for flags.

    Every problem is reported at once (joined by "; "), so a user fixes a file in one go.
    `None` means "not set" and is dropped: TOML has no null and the server must never get one.
    """
    clean, problems = check_values(values, labels=labels)
    if problems:
        raise PresetError(problems_message(where, problems))
    return clean


def check_values(
    values: Mapping[str, Any], *, labels: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The valid values, and a problem for each invalid one (see `problems_message`)."""
    problems: list[str] = []
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        spec = PRESET_KEYS.get(key)
        if spec is None:
            problems.append(_unknown_key(key))
            continue
        found = [] if (one := _check_value(key, value, spec)) is None else [one]
        if not found and key == "params":
            found = _check_params(value, "params")
        if not found and key == "prompt_template" and "{prompt}" not in value:
            found = ["'prompt_template' must contain {prompt}, where the prompt goes"]
        label = (labels or {}).get(key)
        problems += [named_problem(p.replace(f"'{key}'", label, 1)) if label else p for p in found]
        if not found:
            clean[key] = copy_toml(value)
    return clean, problems


# A problem that already names its flag or file (`--cfg must be …`) gets no `where:` in front.
_LABELLED: Final = "\0"


def named_problem(problem: str) -> str:
    """Mark a problem that names its own file or flag, for `problems_message`."""
    return _LABELLED + problem


_PARAMS_ADVICE: Final = "to send a web UI field as is, put it under [params]"


def problems_message(where: str, problems: list[str]) -> str:
    """`WHERE: a; b; c`: the file (or flag) once, every problem, the [params] advice once."""
    shown = [p.removeprefix(_LABELLED) for p in problems]
    if any(p.startswith("unknown key ") for p in shown):
        shown.append(_PARAMS_ADVICE)
    plain = [i for i, p in enumerate(problems) if not p.startswith(_LABELLED)]
    if plain:
        shown[plain[0]] = f"{where}: {shown[plain[0]]}"
    return "; ".join(shown)


def copy_toml(value: Any) -> Any:
    """A copy of TOML data, so a caller mutating merged values cannot change a loaded preset."""
    if isinstance(value, dict):
        return {k: copy_toml(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_toml(v) for v in value]
    return value


def did_you_mean_suffix(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or "" when none is close."""
    from sdcli.names.lookup import did_you_mean

    close = did_you_mean(word, choices, n=1, cutoff=0.6, holding=False)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- validating ----------------------------------------------------------------------------


def _check_value(key: str, value: Any, spec: KeySpec) -> str | None:
    """A problem with one value, or None. bool is not an int here, though Python says it is."""
    ok = isinstance(value, spec.type) and not isinstance(value, bool)
    if spec.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if spec.type is bool:
        ok = isinstance(value, bool)
    if spec.type is list:
        ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
    if not ok:
        return f"'{key}' must be {_TYPE_WORDS[spec.type]}, got {_describe(value)}"
    if isinstance(value, str):
        if spec.non_empty and not value.strip():
            return f"'{key}' must not be empty"
        if spec.choices and value not in spec.choices:
            return f"'{key}' must be one of {', '.join(spec.choices)}, got {value!r}"
        return None
    if isinstance(value, bool | list):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"'{key}' must be a finite number, got {value}"
    if isinstance(value, int | float):
        return _check_range(key, value, spec)
    return None


def _check_range(key: str, value: float, spec: KeySpec) -> str | None:
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None and not low <= value <= high:
        beyond = ""
        if value > high and spec.ui_limit:
            beyond = f" (the web UI's own limit; --set {key}={value} goes past it)"
        return f"'{key}' must be between {_num(low)} and {_num(high)}, got {value}{beyond}"
    if low is not None and value < low:
        return f"'{key}' must be at least {_num(low)}, got {value}"
    if high is not None and value > high:
        return f"'{key}' must be at most {_num(high)}, got {value}"
    step = spec.multiple_of
    if step and int(value) % step:
        below = int(value) // step * step
        return f"'{key}' must be a multiple of {step}, got {value} (try {below} or {below + step})"
    return None


def _check_params(value: Any, where: str) -> list[str]:
    """`[params]` goes into a JSON body: refuse what JSON cannot carry (dates, nan, inf)."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _check_params(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _check_params(item, f"{where}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"'{where}' must be a finite number, got {value}"]
    if isinstance(value, datetime | date | time):
        return [
            f"'{where}' is {_describe(value)}; JSON can only carry strings, numbers, "
            "booleans, arrays and tables (quote it as a string)"
        ]
    return []


def _describe(value: Any) -> str:
    words = {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a float",
        dict: "a table",
        list: "an array",
        datetime: "a date-time",
        date: "a date",
        time: "a time",
    }
    word = words.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{word} ({shown})" if not isinstance(value, dict | list) else word


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _unknown_key(key: str) -> str:
    alias = _ALIASES.get(key) or _ALIASES.get(key.lower())
    suggestion = f" (did you mean '{alias}'?)" if alias else did_you_mean_suffix(key, PRESET_KEYS)
    return f"unknown key '{key}'{suggestion}"
