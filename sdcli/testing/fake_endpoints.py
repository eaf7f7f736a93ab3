"""The handlers behind each route: what the web UI answers, endpoint by endpoint."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from typing import TYPE_CHECKING, Any

from sdcli.testing import fake_generate
from sdcli.testing.fake_data import find_checkpoint, load_json, schema
from sdcli.testing.fake_engine import RESTRICTED_OPTIONS, HTTPFailure, ServerCrash
from sdcli.testing.fake_http import NO_BODY, Call, Reply
from sdcli.testing.fake_infotext import parse_infotext
from sdcli.testing.fake_png import encode_png, png_size, read_text_chunks
from sdcli.testing.fake_validate import (
    FieldSpec,
    Invalid,
    coerce,
    request_fields,
    schema_fields,
    validate_body,
)

if TYPE_CHECKING:
    from sdcli.testing.fake_routes import Api

_PROGRESS_REQUEST = [
    FieldSpec("id_task", "string", None),
    FieldSpec("id_live_preview", "integer", -1),
    FieldSpec("live_preview", "boolean", True),
]
_CLEAN_ITEMS = {"parameters", "exif", "dpi", "icc_profile", "srgb", "gamma", "transparency"}


def object_body(api: Api, call: Call) -> dict[str, Any]:
    body = None if call.body is NO_BODY else call.body
    validate_body(body, [], api.profile.validation_style)
    assert isinstance(body, dict)
    return body


def get_progress(api: Api, call: Call) -> Any:
    raw = call.query.get("skip_current_image", "false")
    try:
        skip = coerce(api.profile.validation_style, "boolean", raw)
    except ValueError as exc:
        if api.profile.validation_style == "pydantic1":
            item = {
                "loc": ["query", "skip_current_image"],
                "msg": str(exc),
                "type": "type_error.bool",
            }
        else:
            item = {
                "type": "bool_parsing",
                "loc": ["query", "skip_current_image"],
                "msg": str(exc),
                "input": raw,
            }
        raise Invalid([item]) from None
    return api.engine.progress(bool(skip))


def get_options(api: Api, call: Call) -> Any:
    """Every option; those set since start-up go through the response model's coercion."""
    props: dict[str, Any] = schema("Options")["properties"]
    out: dict[str, Any] = {}
    with api.engine.cv:
        for key, value in api.engine.options.items():
            spec = props.get(key, {})
            kind = spec.get("type")
            changed = key in api.engine.explicit_options or value != spec.get("default")
            if kind in ("number", "boolean", "string") and changed and value is not None:
                with contextlib.suppress(ValueError):
                    value = coerce("pydantic1", kind, value)
            out[key] = value
    return out


def set_options(api: Api, call: Call) -> Any:
    """POST /options: alias check, then key by key; a model change loads under the lock."""
    body = object_body(api, call)
    engine = api.engine
    checkpoint = body.get("sd_model_checkpoint")
    if checkpoint is not None and find_checkpoint(engine.models, checkpoint) is None:
        raise ServerCrash("RuntimeError", f"model {checkpoint!r} not found")
    updated = []
    for key, value in body.items():
        with engine.cv:
            old = engine.options.get(key)
            # opts.set compares with opts.data: a key it does not hold is set (and held) even
            # when the value equals the default (fixtures/more/override-settings-leak.json)
            if engine.held(key) == value or key in RESTRICTED_OPTIONS:
                updated.append({key: False})
                continue
            if key not in engine.options:
                raise ServerCrash("KeyError", repr(key))
            engine.options[key] = value
            engine.explicit_options.add(key)
        updated.append({key: True})
        if key == "sd_model_checkpoint" and not api.profile.lazy_model_load:
            _load_model(api, value, old)
    return {"updated": updated} if api.profile.options_response == "updated" else None


def _load_model(api: Api, alias: Any, old: Any) -> None:
    engine = api.engine
    with engine.queue_lock(), engine.cv:
        target = find_checkpoint(engine.models, alias)
        if target is None or target is engine.loaded:
            return
        if engine.fail_next_load:  # the real server prints the error and answers 200 anyway
            engine.fail_next_load = False
            engine.sleep(engine.model_load_delay, wake_on_interrupt=False)
            engine.options["sd_model_checkpoint"] = old
            return
        engine.load(target)


def cmd_flags(api: Api, call: Call) -> Any:
    flags: dict[str, Any] = load_json("cmd-flags.json")
    flags["nowebui"] = not api.profile.ui_mode
    flags["port"] = str(api.port())
    if api.credentials:
        flags["api_auth"] = ",".join(f"{u}:{p}" for u, p in api.credentials.items())
    return flags


def sd_models(api: Api, call: Call) -> Any:
    with api.engine.cv:
        return [m.api_item(with_type=api.profile.model_type_field) for m in api.engine.models]


def extra_get(api: Api, call: Call) -> Any:
    name = call.path.rsplit("/", 1)[-1]
    if name == "sd-modules":
        base = "/home/user/stable-diffusion-webui-forge/models"
        return [
            {"model_name": n, "filename": f"{base}/{d}/{n}"}
            for d, n in (
                ("VAE", "ae.safetensors"),
                ("text_encoder", "clip_l.safetensors"),
                ("text_encoder", "t5xxl_fp16.safetensors"),
            )
        ]
    if name == "version":
        return {
            "app": "sd.next",
            "updated": api.profile.version,
            "hash": "431bcc36",
            "url": "",
        }
    return {"status": "idle"} if name == "status" else {"platform": "Linux"}


def _generate(api: Api, call: Call, kind: str) -> Any:
    body = None if call.body is NO_BODY else call.body
    values = validate_body(body, request_fields(kind, api.profile), api.profile.validation_style)
    assert isinstance(body, dict)
    job = fake_generate.prepare(api.engine, kind, values, body)
    return fake_generate.run(api.engine, job, api.png_parameters())


def txt2img(api: Api, call: Call) -> Any:
    return _generate(api, call, "txt2img")


def img2img(api: Api, call: Call) -> Any:
    return _generate(api, call, "img2img")


def png_info(api: Api, call: Call) -> Any:
    body = object_body(api, call)
    if "image" not in body:
        raise Invalid(
            [{"loc": ["body", "image"], "msg": "field required", "type": "value_error.missing"}]
        )
    raw = fake_generate.decode_image(body["image"])
    items = read_text_chunks(raw)
    info = items.get("parameters", "")
    rest = {k: v for k, v in items.items() if k not in _CLEAN_ITEMS}
    return {"info": info, "items": rest, "parameters": parse_infotext(info)}


def _scaled(size: int, scale: float) -> int:
    """modules/upscaler.py: the upscaler's target side, floored to a multiple of 8."""
    return math.floor(size * scale + 1e-6) // 8 * 8


def _find_upscaler(name: Any) -> str | None:
    """`None`/"None" mean no upscaler; any other name must be one the server lists."""
    if name is None or name == "None":
        return None
    if name not in fake_generate.upscalers():
        raise ServerCrash("AssertionError", f"could not find upscaler named {name}")
    return str(name)


def _upscale(values: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    """scripts/postprocessing_upscale.py, then GFPGAN and CodeFormer (their script order).

    The result keeps the input's own text chunks (its `parameters`) and gains a
    `postprocessing` chunk, empty when nothing ran (fixtures/more/, extra-single-image).
    """
    first = _find_upscaler(values.get("upscaler_1"))
    second = _find_upscaler(values.get("upscaler_2")) if first is not None else None
    chunks = read_text_chunks(raw)
    try:
        width, height = png_size(raw)
    except ValueError:
        width, height = 512, 512
    info: dict[str, Any] = {}
    if first is not None:
        to_w, to_h = int(values["upscaling_resize_w"]), int(values["upscaling_resize_h"])
        crop = values.get("resize_mode") == 1 and values.get("upscaling_crop") is not False
        if values.get("resize_mode") == 1:
            factor = max(to_w / width, to_h / height)
            info["Postprocess upscale to"] = f"{to_w}x{to_h}"
        else:
            factor = float(values.get("upscaling_resize") or 2)
            info["Postprocess upscale by"] = factor
        width, height = _scaled(width, factor), _scaled(height, factor)
        if crop:
            width, height = to_w, to_h
            info["Postprocess crop to"] = f"{width}x{height}"
        info["Postprocess upscaler"] = first
        if second is not None and float(values.get("extras_upscaler_2_visibility") or 0) > 0:
            info["Postprocess upscaler 2"] = second
    gfpgan = float(values.get("gfpgan_visibility") or 0)
    if gfpgan > 0:
        info["GFPGAN visibility"] = round(gfpgan, 3)
    codeformer = float(values.get("codeformer_visibility") or 0)
    if codeformer > 0:
        info["CodeFormer visibility"] = round(codeformer, 3)
        info["CodeFormer weight"] = round(float(values.get("codeformer_weight") or 0), 3)
    text = ", ".join(f"{k}: {v}" for k, v in info.items())
    chunks["postprocessing"] = text
    seed = len(raw) + sum(ord(c) for c in text)
    return encode_png(width, height, seed, text=chunks), f"<p>{text}</p>"


def extras_single(api: Api, call: Call) -> Any:
    body = None if call.body is NO_BODY else call.body
    values = validate_body(
        body, list(schema_fields("ExtrasSingleImageRequest")), api.profile.validation_style
    )
    raw = fake_generate.decode_image(values.get("image"))
    with api.engine.queue_lock():
        image, html = _upscale(values, raw)
    return {"html_info": html, "image": base64.b64encode(image).decode("ascii")}


def extras_batch(api: Api, call: Call) -> Any:
    body = None if call.body is NO_BODY else call.body
    values = validate_body(
        body, list(schema_fields("ExtrasBatchImagesRequest")), api.profile.validation_style
    )
    if values.get("imageList") is None:
        raise Invalid(
            [
                {
                    "loc": ["body", "imageList"],
                    "msg": "field required",
                    "type": "value_error.missing",
                }
            ]
        )
    raws = [
        fake_generate.decode_image((x or {}).get("data") if isinstance(x, dict) else x)
        for x in values["imageList"]
    ]
    html, images = "", []
    with api.engine.queue_lock():
        for raw in raws:
            image, html = _upscale(values, raw)
            images.append(base64.b64encode(image).decode("ascii"))
    return {"html_info": html, "images": images}


CAPTIONS = {
    "clip": "a painting of a cat sitting on a table, by Greg Rutkowski, digital art",
    "deepdanbooru": "1girl, solo, cat, sitting, table",
}


def interrogate(api: Api, call: Call) -> Any:
    """The image is decoded before the model is looked at (no image + bad model: 500).

    Without the weights (fixtures/more/): CLIP's BLIP load fails inside and it answers 200
    "<error>"; DeepDanbooru's first call dies (500 IndexError), later ones answer "".
    """
    body = None if call.body is NO_BODY else call.body
    values = validate_body(
        body, list(schema_fields("InterrogateRequest")), api.profile.validation_style
    )
    fake_generate.decode_image(values.get("image"))
    model = values.get("model")
    if model not in CAPTIONS:
        raise HTTPFailure(404, "Model not found")
    engine = api.engine
    with engine.queue_lock():
        if engine.interrogator_weights:
            return {"caption": CAPTIONS[model]}
        if model == "clip":
            return {"caption": "<error>"}
        with engine.cv:
            first, engine.deepbooru_failed = not engine.deepbooru_failed, True
        if first:
            raise ServerCrash("IndexError", "list index out of range")
        return {"caption": ""}


def interrupt(api: Api, call: Call) -> Any:
    with api.engine.cv:
        api.engine.state.interrupted = True
        api.engine.cv.notify_all()
    return {}


def skip(api: Api, call: Call) -> Any:
    with api.engine.cv:
        api.engine.state.skipped = True
        api.engine.cv.notify_all()
    return None


def locked_none(api: Api, call: Call) -> Any:
    with api.engine.queue_lock():
        return None


def pending_tasks(api: Api, call: Call) -> Any:
    with api.engine.cv:
        return {"size": len(api.engine.pending), "tasks": list(api.engine.pending)}


def task_progress(api: Api, call: Call) -> Any:
    body = None if call.body is NO_BODY else call.body
    values = validate_body(body, _PROGRESS_REQUEST, api.profile.validation_style)
    return api.engine.task_progress(
        values["id_task"], values["id_live_preview"] or -1, values["live_preview"] is not False
    )


def sysinfo(api: Api, call: Call) -> Any:
    text = json.dumps(
        {
            "Platform": "Linux",
            "Version": api.profile.version,
            "Commit": "82a973c04367123ae98bd9abdf80d9eda9b910e2",
        },
        indent=4,
    )
    return Reply(200, text.encode(), "text/plain; charset=utf-8")


def quicksettings(api: Api, call: Call) -> Any:
    return [
        {"name": k, "label": k}
        for k in ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers")
    ]


def docs(api: Api, call: Call) -> Any:
    page = (
        "<!DOCTYPE html><html><head><title>FastAPI - Swagger UI</title></head><body></body></html>"
    )
    return Reply(200, page.encode(), "text/html; charset=utf-8")
