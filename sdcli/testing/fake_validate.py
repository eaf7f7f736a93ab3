"""Request-body validation as FastAPI does it: pydantic v1 (A1111) or v2 (Forge) coercion and 422s.

Field names, kinds and defaults come from the captured OpenAPI schema, so the echo in a
txt2img response lists every field of the request model in the server's order.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from sdcli.testing.fake_data import schema, sdnext_data
from sdcli.testing.fake_profiles import Profile, ValidationStyle

_MODELS = {
    "txt2img": "StableDiffusionProcessingTxt2Img",
    "img2img": "StableDiffusionProcessingImg2Img",
}


@dataclass(frozen=True)
class FieldSpec:
    """One request-model field: name, JSON-schema kind ('integer', ..., 'any'), default."""

    name: str
    kind: str
    default: Any
    item_kind: str = "any"


class Invalid(Exception):
    """A FastAPI validation failure: `errors` is the 422 body's `detail` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


@functools.cache
def schema_fields(name: str) -> tuple[FieldSpec, ...]:
    """The fields of one request schema of the captured OpenAPI document."""
    props: dict[str, Any] = schema(name)["properties"]
    return tuple(
        FieldSpec(
            name,
            spec.get("type", "any"),
            spec.get("default"),
            spec.get("items", {}).get("type", "any"),
        )
        for name, spec in props.items()
    )


_SDNEXT_DEFAULTS = {  # the captured echo holds that request's values; these are the defaults
    "prompt": "",
    "negative_prompt": "",
    "seed": -1,
    "steps": 20,
    "width": 1024,
    "height": 1024,
    "sampler_name": "Default",
    "clip_skip": 1,
    "denoising_strength": 0.3,
    "override_settings": None,
}


def _kind_of(value: Any) -> str:
    for kind, types in (
        ("boolean", bool),
        ("integer", int),
        ("number", float),
        ("string", str),
        ("array", list),
        ("object", dict),
    ):
        if isinstance(value, types):
            return kind
    return "any"


@functools.cache
def _sdnext_fields() -> tuple[FieldSpec, ...]:
    """SD.Next's request model, as the `parameters` echo of a live answer lists it."""
    echo: dict[str, Any] = sdnext_data()["request"]
    return tuple(
        FieldSpec(name, _kind_of(value), _SDNEXT_DEFAULTS.get(name, value))
        for name, value in echo.items()
        if name != "sd_model_checkpoint"
    )


def request_fields(model: str, profile: Profile) -> list[FieldSpec]:
    """The request model of one flavour: removed fields dropped, extras added before the tail."""
    if profile.family == "sdnext":
        return list(_sdnext_fields())
    fields = [f for f in schema_fields(_MODELS[model]) if f.name not in profile.removed_fields]
    overrides = profile.default_overrides
    fields = [
        FieldSpec(
            f.name,
            "any" if f.name == "sampler_index" and overrides else f.kind,
            overrides.get(f.name, f.default),
            f.item_kind,
        )
        for f in fields
    ]
    at = next((i for i, f in enumerate(fields) if f.name == "comments"), len(fields)) + 1
    extras = [
        FieldSpec(name, kind, default) for name, (kind, default) in profile.extra_fields.items()
    ]
    if model == "img2img":
        extras = [f for f in extras if not f.name.startswith("hr_")]
    return fields[:at] + extras + fields[at:]


_V1 = {
    "integer": ("value is not a valid integer", "type_error.integer"),
    "number": ("value is not a valid float", "type_error.float"),
    "string": ("str type expected", "type_error.str"),
    "boolean": ("value could not be parsed to a boolean", "type_error.bool"),
    "array": ("value is not a valid list", "type_error.list"),
    "object": ("value is not a valid dict", "type_error.dict"),
}
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


class _Bad(Exception):
    def __init__(self, msg: str, kind: str) -> None:
        super().__init__(msg)
        self.msg, self.kind = msg, kind


def _v1(kind: str, value: Any) -> Any:
    """pydantic 1.10's lax validators: ints truncate floats, bools are ints, numbers become str."""
    try:
        if kind == "integer":
            return value if type(value) is int else int(value)
        if kind == "number":
            return value if isinstance(value, float) else float(value)
        if kind == "string":
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)):
                return str(value)
        elif kind == "boolean":
            if isinstance(value, str):
                value = value.lower()
            if value is True or value in _TRUE or (type(value) in (int, float) and value == 1):
                return True
            if value is False or value in _FALSE or (type(value) in (int, float) and value == 0):
                return False
        elif kind == "array":
            if isinstance(value, list):
                return value
        elif kind == "object":
            return value if isinstance(value, dict) else dict(value)
        else:
            return value
    except (TypeError, ValueError, OverflowError):
        pass
    raise _Bad(*_V1[kind])


def _v2(kind: str, value: Any) -> Any:
    """pydantic 2's lax mode: no str from numbers, no int from 2.5, messages in its wording."""
    if kind == "integer":
        if isinstance(value, bool) or type(value) is int:
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value) and value.is_integer():
                return int(value)
            raise _Bad(
                "Input should be a valid integer, got a number with a fractional part",
                "int_from_float",
            )
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Bad(
                    "Input should be a valid integer, unable to parse string as an integer",
                    "int_parsing",
                ) from None
        raise _Bad("Input should be a valid integer", "int_type")
    if kind == "number":
        if isinstance(value, (int, float)):
            return float(value) if isinstance(value, bool) else value
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _Bad(
                    "Input should be a valid number, unable to parse string as a number",
                    "float_parsing",
                ) from None
        raise _Bad("Input should be a valid number", "float_type")
    if kind == "string":
        if isinstance(value, str):
            return value
        raise _Bad("Input should be a valid string", "string_type")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float, str)):
            text = str(value).lower() if isinstance(value, str) else value
            if text in _TRUE or text == 1:
                return True
            if text in _FALSE or text == 0:
                return False
            raise _Bad("Input should be a valid boolean, unable to interpret input", "bool_parsing")
        raise _Bad("Input should be a valid boolean", "bool_type")
    if kind == "array" and not isinstance(value, list):
        raise _Bad("Input should be a valid list", "list_type")
    if kind == "object" and not isinstance(value, dict):
        raise _Bad("Input should be a valid dictionary", "dict_type")
    return value


def _error(style: ValidationStyle, loc: list[Any], bad: _Bad, value: Any) -> dict[str, Any]:
    if style == "pydantic1":
        return {"loc": loc, "msg": bad.msg, "type": bad.kind}
    return {"type": bad.kind, "loc": loc, "msg": bad.msg, "input": value}


def coerce(style: ValidationStyle, kind: str, value: Any) -> Any:
    """One value through the flavour's validator; raises ValueError when it would be a 422."""
    try:
        return (_v1 if style == "pydantic1" else _v2)(kind, value)
    except _Bad as exc:
        raise ValueError(exc.msg) from None


def validate_body(body: Any, fields: list[FieldSpec], style: ValidationStyle) -> dict[str, Any]:
    """The request model's values, in field order: given ones coerced, others at their default."""
    if body is None:
        if style == "pydantic1":
            raise Invalid(
                [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]
            )
        raise Invalid(
            [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
        )
    if not isinstance(body, dict):
        if style == "pydantic1":
            raise Invalid(
                [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
            )
        raise Invalid(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": body,
                }
            ]
        )
    check = _v1 if style == "pydantic1" else _v2
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for spec in fields:
        if spec.name not in body:
            values[spec.name] = json.loads(json.dumps(spec.default))  # a fresh copy
            continue
        value = body[spec.name]
        if value is None:
            values[spec.name] = None
            continue
        try:
            value = check(spec.kind, value)
        except _Bad as bad:
            errors.append(_error(style, ["body", spec.name], bad, value))
            continue
        if spec.kind == "array" and spec.item_kind != "any":
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(check(spec.item_kind, item))
                except _Bad as bad:
                    errors.append(_error(style, ["body", spec.name, index], bad, item))
            value = items
        values[spec.name] = value
    if errors:
        raise Invalid(errors)
    return values


def json_decode_error(exc: json.JSONDecodeError, style: ValidationStyle) -> list[dict[str, Any]]:
    """The 422 `detail` FastAPI gives for a body that is not JSON."""
    if style == "pydantic1":
        ctx = {
            "msg": exc.msg,
            "doc": exc.doc,
            "pos": exc.pos,
            "lineno": exc.lineno,
            "colno": exc.colno,
        }
        return [
            {
                "loc": ["body", exc.pos],
                "msg": str(exc),
                "type": "value_error.jsondecode",
                "ctx": ctx,
            }
        ]
    return [
        {
            "type": "json_invalid",
            "loc": ["body", exc.pos],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
    ]
