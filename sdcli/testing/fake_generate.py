"""txt2img and img2img as the web UI runs them: checks, queue, steps, seeds, infotexts, PNGs."""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from sdcli.testing.fake_data import (
    SamplerChoice,
    endpoint_data,
    find_checkpoint,
    load_json,
    resolve_sampler,
)
from sdcli.testing.fake_engine import (
    RESTRICTED_OPTIONS,
    Engine,
    HTTPFailure,
    ServerCrash,
    Stopping,
    create_task_id,
)
from sdcli.testing.fake_infotext import format_infotext, parse_infotext
from sdcli.testing.fake_png import NotAnImage, encode_png, read_text_chunks
from sdcli.testing.fake_profiles import Profile

_V = "/sdapi/v1/"
_CRASH_ON_NULL = ("steps", "width", "height", "batch_size", "n_iter", "cfg_scale")
_INFOTEXT_FIELDS = {  # infotext key -> request field, for the `infotext` request field
    "Prompt": "prompt",
    "Negative prompt": "negative_prompt",
    "Steps": "steps",
    "Sampler": "sampler_name",
    "Schedule type": "scheduler",
    "CFG scale": "cfg_scale",
    "Seed": "seed",
    "Size-1": "width",
    "Size-2": "height",
    "Variation seed": "subseed",
    "Variation seed strength": "subseed_strength",
    "Denoising strength": "denoising_strength",
}


def decode_image(data: Any) -> bytes:
    """The server's lenient decoding (data URI or bare base64); 500 when no image comes out."""
    try:
        text = str(data)
        if text.startswith("data:image/"):
            text = text.split(";")[1].split(",")[1]
        raw = base64.b64decode(text)
        read_text_chunks(raw)
    except (binascii.Error, ValueError, IndexError, NotAnImage):
        raise HTTPFailure(500, "Invalid encoded image") from None
    if not raw:
        raise HTTPFailure(500, "Invalid encoded image")
    return raw


@dataclass
class Job:
    """One validated generation request, before it reaches the queue."""

    kind: str
    values: dict[str, Any]
    sent: set[str]  # request fields the client actually gave
    task_id: str = ""
    choice: SamplerChoice = field(
        default_factory=lambda: SamplerChoice(None, "Automatic", None, False)
    )


def _apply_infotext(job: Job) -> None:
    """The 1.8+ `infotext` field: fill the fields the client did not set (clip skip too)."""
    text = job.values.get("infotext")
    if not isinstance(text, str) or not text:
        return
    parsed = parse_infotext(text)
    for key, name in _INFOTEXT_FIELDS.items():
        if key in parsed and name not in job.sent and name in job.values:
            raw = parsed[key]
            default = job.values[name]
            try:
                job.values[name] = type(default)(raw) if isinstance(default, (int, float)) else raw
            except ValueError:
                continue
    overrides = job.values.get("override_settings") or {}
    if "Clip skip" in parsed and "CLIP_stop_at_last_layers" not in overrides:
        job.values["override_settings"] = {
            **overrides,
            "CLIP_stop_at_last_layers": int(parsed["Clip skip"]),
        }


def _check_scripts(job: Job) -> None:
    """Selectable script and alwayson_scripts names, as get_selectable_script/init_script_args."""
    infos = [s for s in load_json("script-info.json") if s["is_img2img"] == (job.kind == "img2img")]
    selectable = {s["name"].lower() for s in infos if not s["is_alwayson"]}
    alwayson = {s["name"].lower() for s in infos if s["is_alwayson"]}
    name = job.values.get("script_name")
    if name is not None and str(name).lower() not in selectable:
        raise HTTPFailure(422, f"Script '{name}' not found")
    for key in job.values.get("alwayson_scripts") or {}:
        if key.lower() in selectable:
            raise HTTPFailure(
                422, "Cannot have a selectable script in the always on scripts params"
            )
        if key.lower() not in alwayson:
            raise HTTPFailure(422, f"always on script {key} not found")


def prepare(engine: Engine, kind: str, values: dict[str, Any], body: dict[str, Any]) -> Job:
    """Everything the server checks before queueing: init image, scripts, sampler."""
    job = Job(kind, values, set(body))
    if kind == "img2img":
        if values.get("init_images") is None:
            raise HTTPFailure(404, "Init image not found")
        for image in values["init_images"]:
            decode_image(image)
        if values.get("mask") is not None:
            decode_image(values["mask"])
    _apply_infotext(job)
    _check_scripts(job)
    name = values.get("sampler_name") or values.get("sampler_index")
    job.choice = resolve_sampler(
        engine.profile, engine.samplers, engine.schedulers, name, values.get("scheduler")
    )
    if job.choice.sampler is None:
        status = 400 if engine.profile.has_schedulers and not engine.profile.strict_sampler else 404
        raise HTTPFailure(status, "Sampler not found")
    job.task_id = values.get("force_task_id") or create_task_id(kind)
    return job


def run(engine: Engine, job: Job, png_parameters: bool) -> dict[str, Any]:
    """Queue, run and answer one job: `{"images", "parameters", "info"}`."""
    with engine.cv:
        engine.pending[job.task_id] = time.time()
        engine.cv.notify_all()
    try:
        with engine.queue_lock():
            with engine.cv:
                engine.begin(f"scripts_{job.kind}", job.task_id)
            try:
                images, info = _process(engine, job, png_parameters)
                with engine.cv:
                    engine.finish_task(job.task_id)
            finally:
                with engine.cv:
                    engine.end(job.task_id)
    finally:
        with engine.cv:
            engine.pending.pop(job.task_id, None)
    params = dict(job.values)
    if job.kind == "img2img" and not params.get("include_init_images"):
        params["init_images"], params["mask"] = None, None
    encoded = [base64.b64encode(png).decode("ascii") for png in images]
    return {
        "images": encoded if job.values.get("send_images", True) is not False else [],
        "parameters": params,
        "info": json.dumps(info),
    }


def _apply_overrides(engine: Engine, job: Job) -> dict[str, Any]:
    """process_images' override_settings (cv held): model first, unknown keys are a KeyError."""
    overrides = dict(job.values.get("override_settings") or {})
    target = find_checkpoint(engine.models, overrides.get("sd_model_checkpoint"))
    if target is None:
        overrides.pop("sd_model_checkpoint", None)
        target = engine.configured_model()  # Forge: falls back when the title matches nothing
    if engine.profile.lazy_model_load and engine.fail_next_load and target is not engine.loaded:
        # Forge loads the selected checkpoint only now, so a broken file fails the generation
        # (the exception is the one safetensors raises on a damaged file; not captured live).
        engine.fail_next_load = False
        raise ServerCrash("SafetensorError", "Error while deserializing header: HeaderTooLarge")
    engine.load(target, normalise_option=False)
    # `stored_opts` keeps only the keys opts.data holds: an override of any other key is applied
    # (and held from then on) but never restored, so it sticks (fixtures/more/, the leak).
    stored = {k: engine.options[k] for k in overrides if k in engine.explicit_options}
    try:
        for key, value in overrides.items():
            if engine.held(key) == value or key in RESTRICTED_OPTIONS:
                continue
            if key not in engine.options:
                raise ServerCrash("KeyError", repr(key))
            engine.options[key] = value
            engine.explicit_options.add(key)
    except ServerCrash:
        if job.values.get("override_settings_restore_afterwards", True) is not False:
            engine.options.update(stored)  # the `finally` of process_images
        raise
    return stored


def _process(engine: Engine, job: Job, png_parameters: bool) -> tuple[list[bytes], dict[str, Any]]:
    v = job.values
    with engine.cv:
        engine.sleep(engine.step_delay)  # job_count is still -1: the "0.01 plateau" begins
        engine.maybe_pause(-1)
        stored = _apply_overrides(engine, job)
        model = engine.loaded
        opts = dict(engine.options)
    try:
        return _sample(engine, job, model.name_for_extra, model.shorthash, opts, png_parameters)
    finally:
        if v.get("override_settings_restore_afterwards", True) is not False:
            with engine.cv:
                engine.options.update(stored)


@dataclass(frozen=True)
class _Sampling:
    """One request's parameters as process_images has them when sampling starts."""

    v: dict[str, Any]
    opts: dict[str, Any]
    choice: SamplerChoice
    model_name: str
    model_hash: str | None
    steps: int
    width: int
    height: int
    batch: int
    n_iter: int
    image_size: tuple[int, int]  # the decoded images' (hires: the second pass's)
    seeds: list[int]
    subseeds: list[int]
    strength: float
    clip_skip: float
    restore_faces: bool
    tiling: bool
    prompt: str
    negative: str
    extra: dict[str, Any]  # extra_generation_params
    hires_crash: tuple[str, str] | None  # what the hires pass dies of, if it does


def _sample(
    engine: Engine,
    job: Job,
    model_name: str,
    model_hash: str | None,
    opts: dict[str, Any],
    png_parameters: bool,
) -> tuple[list[bytes], dict[str, Any]]:
    run = _resolve(engine, job, model_name, model_hash, opts)
    images, infotexts = _run_batches(engine, run, png_parameters)
    if engine.stopping:
        raise Stopping
    fmt = str(opts.get("samples_format", "png")).lower()
    if fmt not in ("png", "jpg", "jpeg", "webp"):
        raise HTTPFailure(500, "Invalid image format")
    return images, _info(engine, run, infotexts)


def _resolve(
    engine: Engine, job: Job, model_name: str, model_hash: str | None, opts: dict[str, Any]
) -> _Sampling:
    """The request's values checked and completed, failing where and as the server does."""
    v = job.values
    _refuse_nulls(v)
    clip_skip = _clip_skip(v, opts)
    steps, width, height = int(v["steps"]), int(v["width"]), int(v["height"])
    batch, n_iter = int(v["batch_size"]), int(v["n_iter"])
    # the VAE works on 8-pixel cells: width 63 gives a 56-pixel-wide image (captured)
    image_size = width // 8 * 8, height // 8 * 8
    if min(image_size) < 8:
        raise ServerCrash("RuntimeError", "cannot reshape tensor of 0 elements")
    seeds, subseeds, strength = _seeds(v, batch * n_iter)
    extra = _schedule_extra(engine, job)
    hires_crash: tuple[str, str] | None = None
    if job.kind == "txt2img" and v.get("enable_hr"):
        image_size = _hires(engine, v, width, height, extra)
        hires_crash = _hires_crash(engine.profile, v)
    if job.kind == "img2img":
        extra["Denoising strength"] = v.get("denoising_strength")
        if v.get("mask") is not None:
            extra.update(_inpaint_infotext(v))
    restore_faces = v.get("restore_faces")
    tiling = v.get("tiling")
    return _Sampling(
        v=v,
        opts=opts,
        choice=job.choice,
        model_name=model_name,
        model_hash=model_hash,
        steps=steps,
        width=width,
        height=height,
        batch=batch,
        n_iter=n_iter,
        image_size=image_size,
        seeds=seeds,
        subseeds=subseeds,
        strength=strength,
        clip_skip=clip_skip,
        restore_faces=bool(
            restore_faces if restore_faces is not None else opts.get("face_restoration")
        ),
        tiling=bool(tiling if tiling is not None else opts.get("tiling")),
        prompt=str(v.get("prompt") or ""),
        negative=str(v.get("negative_prompt") or ""),
        extra=extra,
        hires_crash=hires_crash,
    )


def _refuse_nulls(v: dict[str, Any]) -> None:
    """A null where the server multiplies: the API's model allows it, process_images dies."""
    for name in _CRASH_ON_NULL:
        if name in v and v[name] is None:
            raise ServerCrash(
                "TypeError", "unsupported operand type(s) for *: 'NoneType' and 'int'"
            )


def _clip_skip(v: dict[str, Any], opts: dict[str, Any]) -> float:
    """The option, or SD.Next's request field; anything but a number crashes the sampler."""
    clip_skip = opts.get("CLIP_stop_at_last_layers", 1)
    if v.get("clip_skip") is not None:  # a real request field on SD.Next only
        clip_skip = v["clip_skip"]
    if not isinstance(clip_skip, (int, float)):
        raise ServerCrash(
            "TypeError", f"bad operand type for unary -: '{type(clip_skip).__name__}'"
        )
    return clip_skip


def _seeds(v: dict[str, Any], total: int) -> tuple[list[int], list[int], float]:
    """(all_seeds, all_subseeds, subseed_strength): -1 or none draws one; a variation strength
    keeps the seed the same across the batch."""
    seed = v.get("seed")
    seed = random.randrange(4294967294) if seed is None or seed == -1 else int(seed)
    subseed = v.get("subseed")
    subseed = random.randrange(4294967294) if subseed is None or subseed == -1 else int(subseed)
    strength = v.get("subseed_strength") or 0
    all_seeds = [seed + (i if strength == 0 else 0) for i in range(total)]
    return all_seeds, [subseed + i for i in range(total)], strength


def _schedule_extra(engine: Engine, job: Job) -> dict[str, Any]:
    """The infotext's "Schedule type" where the server has schedulers and a k-diffusion sampler."""
    extra: dict[str, Any] = {}
    choice = job.choice
    if engine.profile.has_schedulers and choice.k_diffusion:
        effective = choice.scheduler if choice.scheduler != "Automatic" else choice.default_schedule
        if effective is not None:
            extra["Schedule type"] = effective
    return extra


def _infotext(engine: Engine, run: _Sampling, i: int) -> str:
    """Image `i`'s infotext, with the keys the options turn on or off."""
    v, opts, strength, clip_skip = run.v, run.opts, run.strength, run.clip_skip
    fixed = {
        "Steps": run.steps,
        "Sampler": run.choice.sampler,
        "Schedule type": run.choice.scheduler if engine.profile.has_schedulers else None,
        "CFG scale": v["cfg_scale"],
        "Seed": run.seeds[i],
        "Face restoration": opts.get("face_restoration_model") if run.restore_faces else None,
        "Size": f"{run.width}x{run.height}",
        "Model hash": run.model_hash if opts.get("add_model_hash_to_info", True) else None,
        "Model": run.model_name if opts.get("add_model_name_to_info", True) else None,
        "Variation seed": run.subseeds[i] if strength > 0 else None,
        "Variation seed strength": strength if strength > 0 else None,
        "Seed resize from": _resize_from(v),
        "Clip skip": None if clip_skip <= 1 else clip_skip,
        "RNG": opts.get("randn_source") if opts.get("randn_source", "GPU") != "GPU" else None,
        "Tiling": "True" if run.tiling else None,
    }
    version = engine.profile.version if opts.get("add_version_to_infotext", True) else None
    return format_infotext(run.prompt, run.negative, fixed, run.extra, version)


def _run_batches(
    engine: Engine, run: _Sampling, png_parameters: bool
) -> tuple[list[bytes], list[str]]:
    """Each batch of n_iter: its steps (interrupt, skip and the test's pause act there), then
    its images; an interrupted batch still decodes its last latent."""
    images: list[bytes] = []
    infotexts: list[str] = []
    steps, batch, n_iter = run.steps, run.batch, run.n_iter
    with engine.cv:
        engine.state.job_count = n_iter
    for n in range(n_iter):
        with engine.cv:
            st = engine.state
            if st.interrupted or st.stopping_generation:
                break
            st.skipped = False
            if n_iter > 1:
                st.job = f"Batch {n + 1} out of {n_iter}"
            st.sampling_steps, st.sampling_step = steps, 0
            engine.set_preview(run.width, run.height, run.seeds[n * batch])
            engine.sample_steps(steps)
            # an interrupted batch still decodes its last latent: a noisier picture, same size
            noise = 0 if st.sampling_step == steps else 1 + st.sampling_step
        if run.hires_crash is not None:  # the first pass ran; the hires pass fails at once
            raise ServerCrash(*run.hires_crash)
        embed = png_parameters and run.opts.get("enable_pnginfo", True)
        for i in range(n * batch, (n + 1) * batch):
            text = _infotext(engine, run, i)
            chunks = {"parameters": text} if embed else {}
            images.append(encode_png(*run.image_size, run.seeds[i] * 1009 + noise, text=chunks))
            infotexts.append(text)
        with engine.cv:
            engine.next_job()
    return images, infotexts


def _info(engine: Engine, run: _Sampling, infotexts: list[str]) -> dict[str, Any]:
    """The answer's `info` (a JSON string on the wire): the first pass's size, every seed."""
    v, opts, total = run.v, run.opts, run.batch * run.n_iter
    return {
        "prompt": run.prompt,
        "all_prompts": [run.prompt] * total,
        "negative_prompt": run.negative,
        "all_negative_prompts": [run.negative] * total,
        "seed": run.seeds[0],
        "all_seeds": run.seeds,
        "subseed": run.subseeds[0],
        "all_subseeds": run.subseeds,
        "subseed_strength": run.strength,
        "width": run.width,
        "height": run.height,
        "sampler_name": run.choice.sampler,
        "cfg_scale": v["cfg_scale"],
        "steps": run.steps,
        "batch_size": run.batch,
        "restore_faces": run.restore_faces,
        "face_restoration_model": opts.get("face_restoration_model") if run.restore_faces else None,
        "sd_model_name": run.model_name,
        "sd_model_hash": run.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": v.get("seed_resize_from_w", -1),
        "seed_resize_from_h": v.get("seed_resize_from_h", -1),
        "denoising_strength": v.get("denoising_strength"),
        "extra_generation_params": run.extra,
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": list(v.get("styles") or []),
        "job_timestamp": engine.state.job_timestamp,
        "clip_skip": run.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": engine.profile.version,
    }


def _hires(
    engine: Engine, v: dict[str, Any], width: int, height: int, extra: dict[str, Any]
) -> tuple[int, int]:
    """Hires fix: check the upscaler as `init()` does, add its infotext keys, return the size.

    The images come out at the second pass's size; info and the infotext's Size keep the first.
    """
    upscaler = v.get("hr_upscaler") or "Latent"
    known = upscalers()
    if f"{_V}latent-upscale-modes" not in engine.profile.removed_routes:
        known += [m["name"] for m in endpoint_data("latent-upscale-modes")]
    if upscaler not in known:
        raise ServerCrash("Exception", f"could not find upscaler named {upscaler}")
    scale = float(v.get("hr_scale") or 2.0)
    resize_x, resize_y = int(v.get("hr_resize_x") or 0), int(v.get("hr_resize_y") or 0)
    if resize_x == 0 and resize_y == 0:
        target_w, target_h = int(width * scale), int(height * scale)
        extra["Hires upscale"] = scale
    else:
        target_w = resize_x or resize_y * width // height
        target_h = resize_y or resize_x * height // width
        extra["Hires resize"] = f"{target_w}x{target_h}"
    if v.get("hr_second_pass_steps"):
        extra["Hires steps"] = v["hr_second_pass_steps"]
    extra["Hires upscaler"] = upscaler
    if engine.profile.forge_hires:  # before the upscale keys (fixtures/forge/txt2img-hires.json)
        forge = {
            f"Hires Module {i}": m for i, m in enumerate(v.get("hr_additional_modules") or [], 1)
        }
        hr_cfg = v.get("hr_cfg")
        forge["Hires CFG Scale"] = float(hr_cfg) if hr_cfg is not None else 1.0
        hires = {k: extra.pop(k) for k in list(extra) if k.startswith("Hires ")}
        extra.update(forge)
        extra.update(hires)
    extra["Denoising strength"] = v.get("denoising_strength")
    return target_w // 8 * 8, target_h // 8 * 8


def _hires_crash(profile: Profile, v: dict[str, Any]) -> tuple[str, str] | None:
    """What the hires pass dies of when the API left a field without a usable default."""
    if profile.forge_hires and v.get("hr_additional_modules") is None:
        return ("TypeError", "argument of type 'NoneType' is not iterable")
    if profile.hires_needs_denoising and v.get("denoising_strength") is None:
        return ("TypeError", "'>' not supported between instances of 'NoneType' and 'int'")
    return None


_MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")


def _inpaint_infotext(v: dict[str, Any]) -> dict[str, Any]:
    """What an inpainting job adds to the infotext, in the captured order (fixtures/more/)."""
    extra: dict[str, Any] = {}
    if v.get("inpainting_mask_invert"):
        extra["Mask mode"] = "Inpaint not masked"
    blur = v.get("mask_blur") if v.get("mask_blur") is not None else v.get("mask_blur_x", 4)
    if blur:
        extra["Mask blur"] = blur
    if v.get("inpaint_full_res"):
        extra["Inpaint area"] = "Only masked"
        extra["Masked area padding"] = v.get("inpaint_full_res_padding", 0)
    fill = v.get("inpainting_fill", 0)
    if fill != 1 and 0 <= int(fill) < len(_MASKED_CONTENT):
        extra["Masked content"] = _MASKED_CONTENT[int(fill)]
    return extra


def _resize_from(v: dict[str, Any]) -> str | None:
    w, h = v.get("seed_resize_from_w"), v.get("seed_resize_from_h")
    if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
        return f"{w}x{h}"
    return None


def upscalers() -> list[str]:
    """Names accepted by the extras endpoints."""
    return [u["name"] for u in endpoint_data("upscalers")]
