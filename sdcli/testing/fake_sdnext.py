"""SD.Next as a live server answered (vladmandic/sdnext master 058a7f0cf, 2026-07-23).

Rebuilt from captures (the sdnext fixtures and `data/sdnext.json`), not from the A1111 code
paths with flags: SD.Next differs in nearly every answer a client reads. What it does here:
GET /schedulers fails (500 ResponseValidationError); /samplers lists `{name, options}`; an unknown
sampler (or an old combined name) is a 404; the `scheduler` field does not exist and
`override_settings` clip skip is ignored (only the `clip_skip` field counts); images are JPEG with
the infotext in the EXIF UserComment; hires needs `hr_resize_mode` > 0 and an upscaler; a model
that fails to load leaves none loaded, and txt2img then answers 200 with no image; /interrupt
answers 204, and the interrupted job returns a 512x512 image.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sdcli.testing.fake_data import find_checkpoint, sdnext_data
from sdcli.testing.fake_engine import Engine, HTTPFailure, Stopping
from sdcli.testing.fake_http import NO_BODY, Call, Reply, json_reply
from sdcli.testing.fake_infotext import quote
from sdcli.testing.fake_jpeg import encode_jpeg
from sdcli.testing.fake_png import encode_png
from sdcli.testing.fake_validate import coerce, request_fields, validate_body

if TYPE_CHECKING:
    from sdcli.testing.fake_routes import Api

_V = "/sdapi/v1/"
_INTERRUPTED_SIZE = 512  # captured: an interrupted 64x64 job came back as 512x512
_PREVIEW_SIZE = 512
# The diffusers class each sampler runs (infotext `Scheduler:`); captured ones, then a fallback.
_CLASSES = {
    "Default": "PNDMScheduler",
    "UniPC": "UniPCMultistepScheduler",
    "DDIM": "DDIMScheduler",
    "Euler": "EulerDiscreteScheduler",
    "Euler a": "EulerAncestralDiscreteScheduler",
    "DPM++": "DPMSolverMultistepScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "DPM++ 3M": "DPMSolverMultistepScheduler",
    "DPM++ SDE": "DPMSolverSDEScheduler",
    "Heun": "HeunDiscreteScheduler",
    "LMSD": "LMSDiscreteScheduler",
}
_WILDCARD = re.compile(r"\{([^{}]*\|[^{}]*)\}")


def add_routes(api: Api) -> None:
    """Replace the A1111 handlers where SD.Next answers differently."""
    data = sdnext_data()
    preview = "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(8, 8, 1)).decode("ascii")
    static = {
        "version": data["version"],
        "history": data["history"],
        "prompt-styles": [{**style, "preview": preview} for style in data["prompt-styles"]],
        "options-info": {"options": data["options-info"]},
    }
    for name, body in static.items():
        api._add("GET", _V + name, _static(body))
    api._add("GET", _V + "samplers", lambda a, c: a.engine.samplers)
    api._add("GET", _V + "schedulers", _schedulers)
    api._add("GET", _V + "upscalers", _upscalers)
    api._add("GET", _V + "options", _get_options)
    api._add("GET", _V + "checkpoint", _checkpoint)
    api._add("GET", _V + "progress", _progress)
    api._add("POST", _V + "options", _set_options, json_body=True)
    api._add("POST", _V + "txt2img", lambda a, c: _generate(a, c, "txt2img"), json_body=True)
    api._add("POST", _V + "img2img", lambda a, c: _generate(a, c, "img2img"), json_body=True)
    api._add("POST", _V + "interrupt", _interrupt)
    api._add("POST", _V + "skip", _skip)


def _static(body: Any) -> Callable[[Api, Call], Any]:
    return lambda api, call: json.loads(json.dumps(body))


# --- lists and state -----------------------------------------------------------------------------


def _schedulers(api: Api, call: Call) -> Reply:
    """The list fails the server's own response model (`cls: null` separators): a 500."""
    broken = sdnext_data()["schedulers_500"]
    return json_reply(
        500,
        {
            "error": "ResponseValidationError",
            "code": 500,
            "detail": "",
            "body": broken["items"],
            "errors": broken["errors"],
        },
    )


def upscaler_names() -> list[str]:
    names: list[str] = sdnext_data()["upscalers"]
    return names


def _upscalers(api: Api, call: Call) -> Any:
    first = sdnext_data()["upscaler_first"]
    return [{**first, "name": name} for name in upscaler_names()]


def _get_options(api: Api, call: Call) -> Any:
    """Only the keys held in `opts.data`: the config file's and those set since."""
    with api.engine.cv:
        return json.loads(json.dumps(api.engine.options))


def _checkpoint(api: Api, call: Call) -> Any:
    engine = api.engine
    with engine.cv:
        if engine.unloaded:
            return {"type": None, "class": None}
        model = engine.loaded
        return {
            "type": "sd",
            "class": "StableDiffusionPipeline",
            "checkpoint": model.filename,
            "title": model.title,
            "name": model.model_name,
            "filename": model.filename,
            "hash": model.shorthash,
        }


def _known_option(engine: Engine, key: str) -> bool:
    return key in engine.options or key in sdnext_data()["options-info"]


def _option_value(engine: Engine, key: str) -> Any:
    if key in engine.options:
        return engine.options[key]
    label = sdnext_data()["options-info"].get(key)
    return label.get("default") if isinstance(label, dict) else None


def _set_options(api: Api, call: Call) -> Any:
    """`{"updated": [{KEY: changed}]}`; an unknown key is only logged; a model loads at once."""
    body = call.body if isinstance(call.body, dict) else {}
    if call.body is NO_BODY or not isinstance(call.body, dict):
        validate_body(None if call.body is NO_BODY else call.body, [], "pydantic2")
    engine = api.engine
    updated = []
    for key, value in body.items():
        with engine.cv:
            if not _known_option(engine, key) or _option_value(engine, key) == value:
                updated.append({key: False})
                continue
            engine.options[key] = value
        if key == "sd_model_checkpoint":
            _load_model(engine, value)
        updated.append({key: True})
    return {"updated": updated}


def _load_model(engine: Engine, alias: Any) -> None:
    """A name that does not load leaves no model at all; the option keeps the name."""
    with engine.queue_lock(), engine.cv:
        target = find_checkpoint(engine.models, alias)
        engine.sleep(engine.model_load_delay, wake_on_interrupt=False)
        if target is None or engine.fail_next_load:
            engine.fail_next_load = False
            engine.unloaded = True
            return
        engine.unloaded = False
        engine.load(target)
        engine.options["sd_model_checkpoint"] = target.title


def _interrupt(api: Api, call: Call) -> Reply:
    with api.engine.cv:
        api.engine.state.interrupted = True
        api.engine.cv.notify_all()
    return Reply(204, b"")


def _skip(api: Api, call: Call) -> Reply:
    with api.engine.cv:
        api.engine.state.skipped = True
        api.engine.cv.notify_all()
    return Reply(204, b"")


def _progress(api: Api, call: Call) -> Any:
    """Step / steps rounded to 2 places (no 0.01 start); a JPEG preview at every step."""
    try:
        skip = coerce("pydantic2", "boolean", call.query.get("skip_current_image", "false"))
    except ValueError:
        skip = False
    engine = api.engine
    with engine.cv:
        st = engine.state
        state = {k: v for k, v in st.as_dict().items() if k != "stopping_generation"}
        if st.job_count == 0:
            return {
                "id": "",
                "progress": 0.0,
                "eta_relative": 0.0,
                "state": state,
                "current_image": None,
                "textinfo": None,
            }
        fraction = 0.0
        if st.sampling_steps > 0:
            fraction = (st.job_no + st.sampling_step / st.sampling_steps) / max(st.job_count, 1)
        elapsed = time.time() - engine.time_start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        image = None
        if st.sampling_step > 0 and not skip:
            preview = encode_jpeg(_PREVIEW_SIZE, _PREVIEW_SIZE, st.sampling_step, comment="")
            image = base64.b64encode(preview).decode("ascii")
        return {
            "id": engine.sdnext_task,
            "progress": round(fraction, 2),
            "eta_relative": round(eta, 2),
            "state": state,
            "current_image": image,
            "textinfo": None,
        }


# --- generation ----------------------------------------------------------------------------------


def _sampler(engine: Engine, name: Any) -> str:
    """Exact name, then any case; anything else (old combined names too) is a 404. Like
    fake_data.resolve_sampler, kept apart from `sdcli.names` on purpose: an independent check."""
    wanted = name if isinstance(name, str) and name else "Default"
    if wanted == "Default":
        return wanted
    for item in engine.samplers:
        if item["name"] == wanted:
            return wanted
    for item in engine.samplers:
        if str(item["name"]).lower() == wanted.lower():
            return str(item["name"])
    raise HTTPFailure(404, "Sampler not found")


def _resolve_prompt(text: str) -> str:
    """`{a|b}` choices: the server draws one at random; the fake takes the first (as seed 7 did)."""
    return _WILDCARD.sub(lambda m: m.group(1).split("|")[0], text)


def _apply_styles(prompt: str, negative: str, styles: list[str]) -> tuple[str, str]:
    known = {s["name"]: s for s in sdnext_data()["prompt-styles"]}
    for name in styles:
        style = known.get(name)
        if style is None:
            continue
        for text, key in ((prompt, "prompt"), (negative, "negative_prompt")):
            template = str(style.get(key) or "")
            if not template:
                continue
            merged = template.replace("{prompt}", text) if "{prompt}" in template else template
            if key == "prompt":
                prompt = merged
            else:
                negative = merged
    return prompt, negative


def _generate(api: Api, call: Call, kind: str) -> Any:
    engine = api.engine
    body = None if call.body is NO_BODY else call.body
    values = validate_body(body, request_fields(kind, api.profile), "pydantic2")
    sampler = _sampler(engine, values.get("sampler_name"))
    task = uuid.uuid4().hex[:15]
    with engine.queue_lock():
        with engine.cv:
            engine.begin("Inference", None)
            engine.sdnext_task = task
            engine.state.job_count = max(1, int(values.get("n_iter") or 1))
        try:
            images, info = _process(api, engine, values, sampler, kind)
        finally:
            with engine.cv:
                engine.end(None)
                engine.sdnext_task = ""
                engine.state.sampling_step = engine.state.sampling_steps = 0
    params = {"sd_model_checkpoint": None, **values}
    return {
        "images": [base64.b64encode(image).decode("ascii") for image in images],
        "parameters": params,
        "info": json.dumps(info) if info else "",
    }


def _overrides(engine: Engine, values: dict[str, Any]) -> dict[str, Any]:
    """Known settings are set for the job (a model loads); unknown ones are skipped (cv held)."""
    stored: dict[str, Any] = {}
    for key, value in dict(values.get("override_settings") or {}).items():
        if not _known_option(engine, key) or _option_value(engine, key) == value:
            continue
        if key == "sd_model_checkpoint":
            target = find_checkpoint(engine.models, value)
            if target is None:
                continue
            stored["__model__"] = engine.loaded
            engine.load(target, normalise_option=False)
            continue
        stored[key] = _option_value(engine, key)  # restored into opts.data, as captured
        engine.options[key] = value
    return stored


def _restore(engine: Engine, stored: dict[str, Any]) -> None:
    model = stored.pop("__model__", None)
    if model is not None:
        engine.load(model, normalise_option=False)
    engine.options.update(stored)


def _process(
    api: Api, engine: Engine, v: dict[str, Any], sampler: str, kind: str
) -> tuple[list[bytes], dict[str, Any]]:
    with engine.cv:
        if engine.unloaded:
            return [], {}  # captured: 200, `images: []`, `info: ""`
        fmt = str(engine.options.get("samples_format", "jpg")).lower()
        stored = _overrides(engine, v)
        model = engine.loaded
    try:
        return _sample(api, engine, v, sampler, kind, model, fmt)
    finally:
        if v.get("override_settings_restore_afterwards", True) is not False:
            with engine.cv:
                _restore(engine, stored)


def _sample(
    api: Api, engine: Engine, v: dict[str, Any], sampler: str, kind: str, model: Any, fmt: str
) -> tuple[list[bytes], dict[str, Any]]:
    steps, batch, n_iter = int(v["steps"]), int(v["batch_size"]), int(v["n_iter"] or 1)
    width, height = int(v["width"]) // 8 * 8, int(v["height"]) // 8 * 8
    total = batch * n_iter
    seed = v.get("seed")
    seed = random.randrange(4294967294) if seed is None or seed == -1 else int(seed)
    subseed = random.randrange(4294967294)
    all_seeds = [seed + i for i in range(total)]
    clip_skip = int(v.get("clip_skip") or 1)
    sent_prompt, sent_negative = str(v.get("prompt") or ""), str(v.get("negative_prompt") or "")
    styles = [str(s) for s in v.get("styles") or []]
    prompt, negative = _apply_styles(
        _resolve_prompt(sent_prompt), _resolve_prompt(sent_negative), styles
    )
    hires = _hires(v, sampler, width, height) if kind == "txt2img" else None
    ops = kind + ("; hires" if hires else "") + ("; upscale" if hires and hires[1] else "")

    def infotext() -> str:
        params: dict[str, Any] = {
            "Steps": steps,
            "Size": f"{width}x{height}",
            "Sampler": None if sampler == "Default" else sampler,
            "Scheduler": _CLASSES.get(sampler, "EulerDiscreteScheduler"),
            "Seed": all_seeds[0],
            "CFG scale": float(v["cfg_scale"]),
            "CFG rescale": float(v.get("cfg_rescale") or 0.0),
            "CLiP-skip": clip_skip if clip_skip > 1 else None,
            "Styles": ", ".join(styles) if styles else None,
            "App": "SD.Next",
            "Version": "unknown",
            "Pipeline": "StableDiffusionPipeline",
            "Operations": ops,
            "Model": model.model_name,
            "Model hash": model.shorthash,
        }
        if hires:
            params.update(hires[0])
        line = ", ".join(f"{k}: {quote(val)}" for k, val in params.items() if val is not None)
        text = f"{prompt}\nNegative prompt: {negative}"
        if sent_prompt:
            text += f"\nTemplate: {sent_prompt}"
        if sent_negative:
            text += f"\nNegative template: {sent_negative}"
        return f"{text}\n{line}"

    images: list[bytes] = []
    texts: list[str] = []
    for n in range(n_iter):
        with engine.cv:
            st = engine.state
            if engine.state.interrupted:
                break
            st.sampling_steps, st.sampling_step, st.job_no = steps, 0, n
            engine.sample_steps(steps)
            interrupted = st.interrupted
        size = (width, height)
        if hires and hires[1]:
            size = hires[1]
        if interrupted:
            size = (_INTERRUPTED_SIZE, _INTERRUPTED_SIZE)
        for i in range(n * batch, (n + 1) * batch):
            text = infotext()
            texts.append(text)
            noise = all_seeds[i] * 1009 + (0 if not interrupted else 1)
            if fmt == "png":
                images.append(encode_png(*size, noise, text={"parameters": text}))
            else:
                images.append(encode_jpeg(*size, noise, comment=text))
    if engine.stopping:
        raise Stopping
    info = {
        "prompt": prompt,
        "all_prompts": [prompt] * total,
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * total,
        "seed": all_seeds[0],
        "all_seeds": all_seeds,
        "subseed": subseed,
        "all_subseeds": [subseed + i for i in range(total)],
        "subseed_strength": v.get("subseed_strength") or 0,
        "width": width,
        "height": height,
        "sampler_name": sampler,
        "cfg_scale": float(v["cfg_scale"]),
        "cfg_end": None,
        "steps": steps,
        "batch_size": batch,
        "detailer": False,
        "detailer_model": None,
        "sd_model_hash": model.shorthash,
        "seed_resize_from_w": v.get("seed_resize_from_w", -1),
        "seed_resize_from_h": v.get("seed_resize_from_h", -1),
        "denoising_strength": v.get("denoising_strength"),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": texts,
        "styles": styles,
        "job_timestamp": engine.state.job_timestamp,
        "clip_skip": clip_skip,
    }
    return images, info


def _hires(
    v: dict[str, Any], sampler: str, width: int, height: int
) -> tuple[dict[str, Any], tuple[int, int] | None] | None:
    """(infotext keys, upscaled size or None) when a second pass runs, else None.

    Captured: `enable_hr` + `hr_scale` alone does nothing; an upscaler (or `hr_force`) runs a
    second pass; only `hr_resize_mode` > 0 with an upscaler makes the image larger.
    """
    upscaler = v.get("hr_upscaler")
    has_upscaler = isinstance(upscaler, str) and upscaler not in ("", "None")
    if not v.get("enable_hr") or not (has_upscaler or v.get("hr_force")):
        return None
    hr_sampler = v.get("hr_sampler_name")
    second = sampler if hr_sampler in (None, "Same as primary") else str(hr_sampler)
    keys: dict[str, Any] = {"Refine": "True"}
    size = None
    mode = int(v.get("hr_resize_mode") or 0)
    if mode > 0 and has_upscaler:
        scale = float(v.get("hr_scale") or 2.0)
        rx, ry = int(v.get("hr_resize_x") or 0), int(v.get("hr_resize_y") or 0)
        if rx or ry:
            size = (rx or ry * width // height, ry or rx * height // width)
        else:
            size = (int(width * scale), int(height * scale))
        keys.update(
            {
                "HiRes mode": mode,
                "Hires upscaler": upscaler,
                "Hires fixed": f"{rx}x{ry}" if rx or ry else None,
                "Hires scale": None if rx or ry else scale,
                "Hires size": f"{size[0]}x{size[1]}",
            }
        )
    keys.update(
        {
            "Hires force": "True",
            "Hires steps": int(v.get("hr_second_pass_steps") or 0),
            "Hires strength": float(v.get("hr_denoising_strength") or 0.0),
            "Hires sampler": None if second == "Default" else second,
        }
    )
    return keys, size
