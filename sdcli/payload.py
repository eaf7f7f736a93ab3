"""Preset values + flags + `--set` -> the exact txt2img request body (pure, no I/O).

Keys here are the user-facing ones (presets, flags); the wire names are chosen in one place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from sdcli.errors import UsageError

# user-facing key -> request field; the rest (sampler, scheduler, clip_skip, model, counts,
# prompt_template, description, extends, params) need more than a rename.
DIRECT_FIELDS = {
    "negative_prompt": "negative_prompt",
    "steps": "steps",
    "cfg_scale": "cfg_scale",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "batch_size": "batch_size",
    "denoising_strength": "denoising_strength",
    "mask_blur": "mask_blur",
    "mask_padding": "inpaint_full_res_padding",
    "restore_faces": "restore_faces",
    "tiling": "tiling",
    "variation_seed": "subseed",
    "variation_strength": "subseed_strength",
    "hires": "enable_hr",
    "hr_scale": "hr_scale",
    "hr_upscaler": "hr_upscaler",
    "hr_steps": "hr_second_pass_steps",
    "styles": "styles",
    "refiner": "refiner_checkpoint",
    "refiner_switch": "refiner_switch_at",
}
# user-facing words -> the numbers (or booleans) the img2img request takes
CHOICE_FIELDS: dict[str, tuple[str, dict[Any, Any]]] = {
    "resize_mode": ("resize_mode", {"just": 0, "crop": 1, "fill": 2, "latent": 3}),
    "inpaint_fill": ("inpainting_fill", {"fill": 0, "original": 1, "noise": 2, "nothing": 3}),
    "inpaint_area": ("inpaint_full_res", {"whole": False, "masked": True}),
    "invert_mask": ("inpainting_mask_invert", {False: 0, True: 1}),
}


def parse_size(text: str, label: str = "--size") -> tuple[int, int]:
    """`WIDTHxHEIGHT` as two integers (UsageError otherwise)."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise UsageError(f"{label} {text!r} must look like WIDTHxHEIGHT, e.g. 512x768")
    return int(w), int(h)


def parse_upscale(
    text: str, label: str = "--upscale"
) -> tuple[str, float | None, tuple[int, int] | None]:
    """`NAME`, `NAME:SCALE` or `NAME:WxH` (an extras upscale after generating) as (name, scale,
    size); a bare NAME doubles the size, as `sdcli upscale` does by default."""
    name, sep, amount = text.rpartition(":")
    if not sep:
        name, amount = text, ""
    name = name.strip()
    if not name:
        raise UsageError(f"{label} {text!r} needs an upscaler name (`sdcli upscalers`)")
    amount = amount.strip()
    if not amount:
        return name, 2.0, None
    if "x" in amount.lower() and not amount.lower().startswith("x"):
        return name, None, parse_size(amount, label)
    try:
        scale = float(amount.lower().removeprefix("x"))
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and 0 < scale <= 8):
        raise UsageError(
            f"{label} {text!r}: the scale must be a number above 0 and at most 8, or WxH",
            hint="e.g. --upscale 'R-ESRGAN 4x+:2' or --upscale Lanczos:1920x1080",
        )
    return name, scale, None


def merge_values(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Later layers win; `params` tables merge key by key. `None` means "not given"."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key == "params" and isinstance(value, Mapping):
                merged["params"] = _deep_merge(merged.get("params", {}), value)
            else:
                merged[key] = value
    return merged


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_template(template: str | None, prompt: str) -> str:
    """`prompt_template = "masterpiece, {prompt}"`; braces elsewhere in prompts stay literal."""
    if not template:
        return prompt
    return template.replace("{prompt}", prompt) if "{prompt}" in template else template


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """`--set KEY=VALUE`: VALUE as JSON if it parses (numbers, true, lists), else as a string.

    Dotted keys reach into objects: `--set override_settings.sd_vae=auto.vae`.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UsageError(f"--set {item!r} must look like KEY=VALUE (e.g. --set tiling=true)")
        try:
            value: Any = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
        except _NotFinite:
            raise UsageError(
                f"--set {key}={raw}: not a finite number (JSON has no NaN or Infinity)",
                hint=f"to send it as text, quote it as JSON: --set '{key}=\"{raw}\"'",
            ) from None
        except ValueError:
            value = raw
        if value is None:
            raise UsageError(
                f"--set {key}=null would send JSON null, which the web UI may crash on",
                hint="leave the key out to use the server's default",
            )
        target = out
        *parents, leaf = key.split(".")
        for part in parents:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise UsageError(f"--set {key}: {part!r} is already set to a plain value")
            target = nxt
        target[leaf] = value
    return out


class _NotFinite(Exception):
    """A NaN or an infinite number in a --set value: it would make the body invalid JSON."""


def _no_constant(name: str) -> float:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999
        raise _NotFinite(text)
    return number


def build_payload(
    values: Mapping[str, Any],
    prompt: str,
    *,
    sampler_name: str | None = None,
    scheduler: str | None = None,
    model_title: str | None = None,
    sets: Mapping[str, Any] | None = None,
    hr_upscaler: str | None = None,
    clip_skip_field: bool = False,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The txt2img body. Names come resolved against the server (or raw, for --dry-run).

    `hr_upscaler` is the server's exact spelling of the one asked for; `clip_skip_field` sends
    clip skip as the request field SD.Next has instead (it ignores the setting override); `defaults`
    fill fields nobody gave (the hires fix defaults the API lacks).
    Never contains JSON null: an absent key lets the server use its default.
    """
    # [params] first: a setting sdcli knows by name (a flag, or a preset key) beats the same
    # field in [params], so a checked `--sampler` can never be undone by a preset's table.
    body: dict[str, Any] = _deep_merge({}, values.get("params") or {})
    body["prompt"] = apply_template(values.get("prompt_template"), prompt)
    for key, wire in DIRECT_FIELDS.items():
        if values.get(key) is not None:
            body[wire] = values[key]
    for key, (wire, table) in CHOICE_FIELDS.items():
        if values.get(key) in table:
            body[wire] = table[values[key]]
    if values.get("hr_size") is not None:
        body["hr_resize_x"], body["hr_resize_y"] = parse_size(str(values["hr_size"]), "--hr-size")
    if sampler_name:
        body["sampler_name"] = sampler_name
    if scheduler:
        body["scheduler"] = scheduler
    overrides: dict[str, Any] = {}
    # The seed post set clip skip in its UI but never sent it: the web UI has no `clip_skip`
    # field and drops unknown keys, so it must travel as a per-request setting override.
    if values.get("clip_skip") is not None:
        if clip_skip_field:
            body["clip_skip"] = values["clip_skip"]
        else:
            overrides["CLIP_stop_at_last_layers"] = values["clip_skip"]
    if model_title:
        overrides["sd_model_checkpoint"] = model_title
    if values.get("vae"):
        overrides["sd_vae"] = values["vae"]
    if overrides:
        body["override_settings"] = _deep_merge(body.get("override_settings") or {}, overrides)
    if sets:
        body = _deep_merge(body, sets)
    if hr_upscaler:
        body["hr_upscaler"] = hr_upscaler
    for key, value in (defaults or {}).items():
        body.setdefault(key, value)
    if body.get("override_settings"):
        body.setdefault("override_settings_restore_afterwards", True)
    cleaned: dict[str, Any] = _drop_nulls(body)
    return cleaned


def _drop_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_nulls(v) for k, v in obj.items() if v is not None}
    return obj
