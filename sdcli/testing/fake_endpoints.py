"""The handlers behind each route: what the web UI answers, endpoint by endpoint."""

from __future__ import annotations

import base64
import contextlib
import json
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


def _upscale(values: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    known = fake_generate.upscalers()
    name = values.get("upscaler_1") or "None"
    if name not in known:
        raise ServerCrash("AssertionError", f"could not find upscaler named {name}")
    chunks = read_text_chunks(raw)
    try:
        width, height = png_size(raw)
    except ValueError:
        width, height = 512, 512
    html = ""
    if name != "None":
        if values.get("resize_mode") == 1:
            width, height = int(values["upscaling_resize_w"]), int(values["upscaling_resize_h"])
            text = f"Postprocess upscale to: {width}x{height}, Postprocess upscaler: {name}"
        else:
            factor = float(values.get("upscaling_resize") or 2)
            width, height = int(width * factor), int(height * factor)
            text = f"Postprocess upscale by: {factor}, Postprocess upscaler: {name}"
        chunks["postprocessing"] = text
        html = f"<p>{text}</p>"
    return encode_png(width, height, len(raw), text=chunks), html


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


def interrogate(api: Api, call: Call) -> Any:
    body = None if call.body is NO_BODY else call.body
    values = validate_body(
        body, list(schema_fields("InterrogateRequest")), api.profile.validation_style
    )
    fake_generate.decode_image(values.get("image"))
    captions = {"clip": "a painting of a cat sitting on a table", "deepdanbooru": "1girl, solo"}
    if values.get("model") not in captions:
        raise HTTPFailure(404, "Model not found")
    with api.engine.queue_lock():
        return {"caption": captions[values["model"]]}


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
