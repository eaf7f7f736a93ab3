"""Generation parameters read from image files, locally: for `sdcli info IMAGE` and `--from-image`.

Nothing here talks to the server, and PNG files are read without Pillow (pngmeta parses chunks).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdcli.datatypes import frozen
from sdcli.errors import UsageError
from sdcli.infotext import (
    Infotext,
    json_fields,
    parse_infotext,
    request_fields,
    typed_parameters,
)

# request field (from infotext.request_fields) -> preset key; every other field goes to [params].
_PRESET_KEYS = {
    "negative_prompt": "negative_prompt",
    "sampler_name": "sampler",
    "scheduler": "scheduler",
    "steps": "steps",
    "cfg_scale": "cfg_scale",
    "clip_skip": "clip_skip",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "denoising_strength": "denoising_strength",
    "model": "model",
}
# Per-image values that a reusable preset should not pin (`presets new --from-image`).
_IMAGE_ONLY = ("seed", "subseed", "subseed_strength")


class NoParametersError(UsageError):
    """An image without generation parameters (never made by the web UI, or stripped)."""


@frozen
class ImageParameters:
    """One image file's infotext, as stored and as parsed."""

    path: Path
    text: str
    info: Infotext

    def as_json(self) -> dict[str, Any]:
        """One `sdcli info IMAGE --json` line, typed like `generate --json`."""
        doc: dict[str, Any] = {
            "path": str(self.path),
            "prompt": self.info.prompt,
            "negative_prompt": self.info.negative_prompt,
            **json_fields(self.info),
            "parameters": typed_parameters(self.info),
            "infotext": self.text,
        }
        if self.info.template is not None:  # SD.Next: the prompts as sent (wildcards, styles)
            doc["template"] = self.info.template
            doc["negative_template"] = self.info.negative_template
        return doc

    def rows(self) -> list[tuple[str, str]]:
        """(key, value) rows: prompt, negative prompt, then every other key in stored order."""
        rows = [("Prompt", self.info.prompt), ("Negative prompt", self.info.negative_prompt)]
        for key, value in (
            ("Template", self.info.template),  # SD.Next: the prompts as sent
            ("Negative template", self.info.negative_template),
        ):
            if value is not None:
                rows.append((key, value))
        rows += list(self.info.params.items())
        return rows


def read_image_parameters(path: Path) -> ImageParameters:
    """Read and parse `path`'s infotext; raises UsageError (exit 2) when there is none."""
    from sdcli.pngmeta import read_parameters_from_file

    text = read_parameters_from_file(path)
    if text is None or not text.strip():
        raise NoParametersError(f"{path}: no generation parameters in this image")
    return ImageParameters(path, text, parse_infotext(text))


@frozen
class ImageSettings:
    """An image's settings as preset values (user-facing keys), plus its prompt."""

    prompt: str
    values: dict[str, Any]


def settings_from_image(path: Path, *, for_preset: bool = False) -> ImageSettings:
    """What `--from-image` layers under presets and flags; validated like a preset file.

    With `for_preset`, per-image values (seed, variation seed) are left out, and so are empty
    strings, so a preset keeps the look of the image without pinning that one picture.
    """
    from sdcli.presets import validate_values

    params = read_image_parameters(path)
    try:
        fields = request_fields(params.info)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc.message}", hint=exc.hint) from exc
    prompt = str(fields.pop("prompt", ""))
    values = preset_values(fields)
    if for_preset:
        values = {k: v for k, v in values.items() if k not in _IMAGE_ONLY and v != ""}
        extra = {k: v for k, v in values.get("params", {}).items() if k not in _IMAGE_ONLY}
        values.pop("params", None)
        if extra:
            values["params"] = extra
    return ImageSettings(prompt, validate_values(values, where=str(path)))


def preset_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Request fields -> preset keys; fields with no preset key go under `params`, as sent."""
    values: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for name, value in fields.items():
        key = _PRESET_KEYS.get(name)
        if key is not None:
            values[key] = value
        else:
            params[name] = value
    if params:
        values["params"] = params
    return values
