"""The web UI's "parameters" text (infotext): parse it, write it back byte for byte, use it.

The format (webui-api.md §8): prompt lines, an optional ``Negative prompt:`` line and the lines
after it, then a last line of ``Key: value`` pairs joined by ``", "``. Parsing follows the web UI's
rules, so we read what it reads; it also keeps flag-style keys and empty values (which the web UI
drops) so that ``format_infotext(parse_infotext(t)) == t`` for every text the web UI writes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

from sdcli.datatypes import mutable
from sdcli.errors import UsageError

__all__ = [
    "Infotext",
    "format_infotext",
    "json_fields",
    "parse_infotext",
    "request_fields",
    "typed_parameters",
    "webui_parameters",
]

# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
# The web UI's own scanning grammar for the last line (§8.2 step 2); keys are >= 2 characters.
_PARAM_RE = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
_KEY_RE = r"\w[\w \-/]+"
# The web UI's pattern for "WxH" values (its `$` also matches before a final "\n").
_SIZE_RE = r"^(\d+)x(\d+)$"
_NEGATIVE = "Negative prompt:"
# SD.Next writes the prompts as sent (before wildcards and styles) on lines of their own, after the
# negative prompt line (which it always writes, empty or not).
_TEMPLATE = "Template:"
_NEGATIVE_TEMPLATE = "Negative template:"
_MIN_PARAM_MATCHES = 3


def _quote(value: str) -> str:
    """Write a value the way the web UI does: JSON-quoted only if it holds `,`, `:` or a newline."""
    if "," in value or ":" in value or "\n" in value:
        return json.dumps(value, ensure_ascii=False)
    return value


def _unquote(value: str) -> str:
    """Decode a `"..."` value as JSON; anything that does not decode stays as written."""
    if len(value) >= 1 and value[0] == '"' and value[-1] == '"':
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _split_size(value: str) -> tuple[int, int] | None:
    m = re.match(_SIZE_RE, value)
    if m is None:
        return None
    try:
        return int(m.group(1)), int(m.group(2))
    except ValueError:
        return None


@mutable
class Infotext:
    """One image's generation parameters, as the web UI writes them into the image."""

    prompt: str = ""
    negative_prompt: str = ""
    # SD.Next's `Template:` / `Negative template:` lines (None when absent), and whether the text
    # had a `Negative prompt:` line for an empty negative prompt (SD.Next always writes one).
    template: str | None = None
    negative_template: str | None = None
    empty_negative_line: bool = False
    # Last-line pairs in order, values decoded as the web UI decodes them; a flag-style key maps to
    # itself (`"Tiling": "Tiling"`), an empty value to "".
    params: dict[str, str] = field(default_factory=dict)

    def _int(self, key: str) -> int | None:
        value = self.params.get(key)
        return None if value is None else _to_int(value)

    def _float(self, key: str) -> float | None:
        value = self.params.get(key)
        return None if value is None else _to_float(value)

    def _size(self) -> tuple[int, int] | None:
        value = self.params.get("Size")
        return None if value is None else _split_size(value)

    @property
    def width(self) -> int | None:
        size = self._size()
        return None if size is None else size[0]

    @property
    def height(self) -> int | None:
        size = self._size()
        return None if size is None else size[1]

    @property
    def seed(self) -> int | None:
        return self._int("Seed")

    @property
    def steps(self) -> int | None:
        return self._int("Steps")

    @property
    def cfg_scale(self) -> float | None:
        return self._float("CFG scale")

    @property
    def clip_skip(self) -> int | None:
        """`Clip skip` (A1111), `CLiP-skip` (SD.Next)."""
        value = self._int("Clip skip")
        return self._int("CLiP-skip") if value is None else value

    @property
    def sampler(self) -> str | None:
        return self.params.get("Sampler")

    @property
    def scheduler(self) -> str | None:
        """The raw "Schedule type" (may be "Automatic", meaning the sampler's default)."""
        return self.params.get("Schedule type")

    @property
    def model(self) -> str | None:
        return self.params.get("Model")

    @property
    def model_hash(self) -> str | None:
        return self.params.get("Model hash")


def _to_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        pass
    number = _to_float(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def _to_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _append_line(acc: str, line: str) -> str:
    # The web UI's accumulation: no separator while the text so far is empty.
    return line if acc == "" else f"{acc}\n{line}"


def _split_text(text: str) -> tuple[str, str, str, dict[str, str]]:
    """Split into (prompt, negative prompt, params line or "", SD.Next's template lines) by the
    web UI's rules (§8.2 1-3); `Template:` lines count only after the negative prompt line."""
    *lines, last = text.strip().split("\n")
    if len(re.findall(_PARAM_RE, last)) < _MIN_PARAM_MATCHES:
        lines.append(last)
        last = ""
    prompt = negative = ""
    templates: dict[str, str] = {}
    part = "prompt"
    for raw in lines:
        line = raw.strip()
        if line.startswith(_NEGATIVE):
            part, line = "negative", line[len(_NEGATIVE) :].strip()
            templates["negative_line"] = ""
        elif part != "prompt" and line.startswith(_TEMPLATE):
            part, line = "template", line[len(_TEMPLATE) :].strip()
            templates[part] = ""
        elif part != "prompt" and line.startswith(_NEGATIVE_TEMPLATE):
            part, line = "negative_template", line[len(_NEGATIVE_TEMPLATE) :].strip()
            templates[part] = ""
        if part == "prompt":
            prompt = _append_line(prompt, line)
        elif part == "negative":
            negative = _append_line(negative, line)
        else:
            templates[part] = _append_line(templates[part], line)
    return prompt, negative, last, templates


def _flags(gap: str) -> list[str]:
    """Flag-style keys in text the pair scanner skipped (`Steps: 2, Tiling, Seed: 1` → Tiling)."""
    found = []
    for piece in gap.split(","):
        key = piece.lstrip()
        if re.fullmatch(_KEY_RE, key):
            found.append(key)
    return found


def parse_infotext(text: str) -> Infotext:
    """Parse infotext as the web UI does, keeping flags and empty values too; never raises."""
    prompt, negative, line, templates = _split_text(text)
    params: dict[str, str] = {}
    pos = 0
    for m in re.finditer(_PARAM_RE, line):
        for flag in _flags(line[pos : m.start()]):
            params[flag] = flag
        params[m.group(1)] = _unquote(m.group(2))
        pos = m.end()
    for flag in _flags(line[pos:]):
        params[flag] = flag
    return Infotext(
        prompt=prompt,
        negative_prompt=negative,
        template=templates.get("template"),
        negative_template=templates.get("negative_template"),
        empty_negative_line=not negative and "negative_line" in templates,
        params=params,
    )


def format_infotext(info: Infotext) -> str:
    """Write infotext exactly as the web UI's create_infotext does (§8.1)."""
    line = ", ".join(
        key if key == value else f"{key}: {_quote(value)}" for key, value in info.params.items()
    )
    negative = ""
    if info.negative_prompt or info.empty_negative_line:
        negative = f"\n{_NEGATIVE} {info.negative_prompt}"
    if info.template is not None:
        negative += f"\n{_TEMPLATE} {info.template}"
    if info.negative_template is not None:
        negative += f"\n{_NEGATIVE_TEMPLATE} {info.negative_template}"
    return f"{info.prompt}{negative}\n{line}".strip()


def webui_parameters(info: Infotext) -> dict[str, str]:
    """What the web UI's png-info `parameters` holds for this text, without its default-filling.

    Computed by reading `format_infotext(info)` with the web UI's exact rules, so it also reproduces
    what the web UI loses: flag-style keys and empty values are dropped, unquoted values that look
    like JSON strings get decoded, and every `WxH` value becomes `<Key>-1` / `<Key>-2`.
    """
    _, _, line, _ = _split_text(format_infotext(info))
    result: dict[str, str] = {}
    for key, raw in re.findall(_PARAM_RE, line):
        if not raw:
            continue  # the web UI fails on an empty value and skips the pair
        value = _unquote(raw)
        m = re.match(_SIZE_RE, value)
        if m is not None:
            result[f"{key}-1"] = m.group(1)
            result[f"{key}-2"] = m.group(2)
        else:
            result[key] = value
    # The texts as parsed: re-reading the formatted text would lose a trailing empty line.
    result["Prompt"] = info.prompt
    result["Negative prompt"] = info.negative_prompt
    return result


# A value written as a plain decimal number ("7", "-1", "0.45", "1e-05"); "007" is a name.
_NUMBER_RE = r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?"
# Keys whose values are names or text even when they look like numbers.
_TEXT_KEYS = frozenset({"Prompt", "Negative prompt", "Hires prompt", "Hires negative prompt"})
_TEXT_KEY_WORDS = (
    "hash", "model", "version", "vae", "lora", "sampler", "upscaler", "checkpoint", "prompt",
    "template",  # SD.Next's "Template": the prompt as typed
)  # fmt: skip


def typed_parameters(info: Infotext) -> dict[str, Any]:
    """`webui_parameters` for scripts: numbers as JSON numbers ("Steps": 20, "CFG scale": 7.5).

    A value becomes a number when it is written as one and its key names no text (prompts,
    model names, hashes, versions), so a model called "1" or a hash "1234567890" stays a string.
    """
    typed: dict[str, Any] = {}
    for key, value in webui_parameters(info).items():
        typed[key] = _number_or_text(key, value)
    return typed


def _number_or_text(key: str, value: str) -> Any:
    lowered = key.lower()
    if key in _TEXT_KEYS or any(word in lowered for word in _TEXT_KEY_WORDS):
        return value
    if not re.fullmatch(_NUMBER_RE, value):
        return value
    if "." in value or "e" in value.lower():
        number = _to_float(value)
        return value if number is None else number
    return int(value)


def json_fields(info: Infotext | None) -> dict[str, Any]:
    """The settings scripts ask for most, typed, from what the image records; None if absent.

    `scheduler` is the "Schedule type" as written ("Automatic" means the sampler's default);
    before web UI 1.9 there is none and the schedule is part of `sampler`.
    """
    if info is None:
        info = Infotext()
    return {
        "width": info.width,
        "height": info.height,
        "steps": info.steps,
        "sampler": info.sampler,
        "scheduler": info.scheduler,
        "cfg_scale": info.cfg_scale,
        "seed": info.seed,
        "model": info.model,
    }


def _typed(key: str, value: str, convert: Callable[[str], int | float | None]) -> int | float:
    number = convert(value)
    if number is None:
        raise UsageError(f"the image's parameters have an unusable {key}: {value!r}")
    return number


# Infotext key -> (request field, converter, value meaning "not set") for one-to-one fields.
_SIMPLE_FIELDS: list[tuple[str, str, Callable[[str], int | float | None] | None, str | None]] = [
    ("Seed", "seed", _to_int, None),
    ("Sampler", "sampler_name", None, None),
    ("Schedule type", "scheduler", None, "Automatic"),
    ("Steps", "steps", _to_int, None),
    ("CFG scale", "cfg_scale", _to_float, None),
    ("Clip skip", "clip_skip", _to_int, None),
    ("CLiP-skip", "clip_skip", _to_int, None),  # SD.Next
    ("HiRes mode", "hr_resize_mode", _to_int, None),  # SD.Next
    ("Hires scale", "hr_scale", _to_float, None),  # SD.Next
    ("Hires strength", "hr_denoising_strength", _to_float, None),  # SD.Next
    ("Denoising strength", "denoising_strength", _to_float, None),
    ("Variation seed", "subseed", _to_int, None),
    ("Variation seed strength", "subseed_strength", _to_float, None),
    ("Hires upscale", "hr_scale", _to_float, None),
    ("Hires steps", "hr_second_pass_steps", _to_int, None),
    ("Hires upscaler", "hr_upscaler", None, None),
    ("Hires sampler", "hr_sampler_name", None, "Use same sampler"),
    ("Hires schedule type", "hr_scheduler", None, "Use same scheduler"),
    ("Hires checkpoint", "hr_checkpoint_name", None, "Use same checkpoint"),
    ("Hires prompt", "hr_prompt", None, None),
    ("Hires negative prompt", "hr_negative_prompt", None, None),
    ("Hires CFG Scale", "hr_cfg", _to_float, None),  # Forge
]
_HIRES_MARKERS = ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "HiRes mode")


def request_fields(info: Infotext) -> dict[str, Any]:
    """Request fields to re-run the generation an image records (`generate --from-image`).

    Prompt and negative prompt are always present (as in the web UI's png-info); every other field
    only when its key is in the text. `enable_hr` is set when hires keys are present, because the
    hires fields do nothing without it. Raises UsageError for a value of the wrong type.
    """
    params = info.params
    fields: dict[str, Any] = {"prompt": info.prompt, "negative_prompt": info.negative_prompt}
    for key, name, convert, unset in _SIMPLE_FIELDS:
        value = params.get(key)
        if value is None or value == unset:
            continue
        fields[name] = value if convert is None else _typed(key, value, convert)
    for key, names in (
        ("Size", ("width", "height")),
        ("Hires resize", ("hr_resize_x", "hr_resize_y")),
        ("Hires fixed", ("hr_resize_x", "hr_resize_y")),  # SD.Next
    ):
        value = params.get(key)
        if value is None:
            continue
        size = _split_size(value)
        if size is None:
            raise UsageError(f"the image's parameters have an unusable {key}: {value!r}")
        fields[names[0]], fields[names[1]] = size
    # Forge: "Hires Module 1: Use same choices", "Hires Module 2: …" -> hr_additional_modules
    modules = sorted(
        (int(key.rsplit(" ", 1)[1]), value)
        for key, value in params.items()
        if key.startswith("Hires Module ") and key.rsplit(" ", 1)[1].isdigit()
    )
    if modules:
        fields["hr_additional_modules"] = [value for _, value in modules]
    model = params.get("Model") or params.get("Model hash")
    if model:
        fields["model"] = model
    if any(key in params for key in _HIRES_MARKERS):
        fields["enable_hr"] = True
    return fields
