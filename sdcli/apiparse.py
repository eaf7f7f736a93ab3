"""The web UI's JSON turned into our dataclasses, once, at the client's edge (pure).

Lenient where the forks differ (a missing key is a default), strict where a mistake would be
saved to disk (an image must be valid base64).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Mapping
from typing import Any

from sdcli.apitypes import (
    Embedding,
    ExtrasResult,
    GeneratedImage,
    GenerationResult,
    Lora,
    Progress,
    PromptStyle,
    SdModel,
    Upscaler,
    Vae,
)
from sdcli.errors import ApiError


def strip_data_url(b64: str) -> str:
    """Accept both bare base64 and `data:image/png;base64,...` (forks and live previews differ)."""
    if b64.startswith("data:"):
        return b64.partition(",")[2]
    return b64


def decode_image(b64: str, *, what: str) -> bytes:
    """Strict base64 decoding: garbage must fail here, not become a corrupt file later."""
    try:
        # Straight from the str: both accept ASCII text (anything else is a ValueError), which
        # spares a copy of every image's base64 (~2.4 MB for a 1024x1024 PNG) on the way.
        raw = strip_data_url(b64)
        if sys.version_info >= (3, 11):
            return binascii.a2b_base64(raw, strict_mode=True)
        return base64.b64decode(raw, validate=True)  # pragma: no cover - Python 3.10
    except (binascii.Error, ValueError) as exc:
        raise ApiError(f"{what} in the server's answer is not valid base64") from exc


def encode_image(data: bytes) -> str:
    """Image bytes as the bare base64 text the API takes (img2img inits, png-info, extras)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def parse_generation(body: Any) -> GenerationResult:
    """Split a txt2img/img2img answer into the real images (with seeds and infotexts) and extras."""
    if not isinstance(body, dict) or not isinstance(body.get("images", []), list):
        raise ApiError("the server's generation answer has no `images` list")
    raw_info = body.get("info")
    info: dict[str, Any] = {}
    warnings: list[str] = []
    if isinstance(raw_info, str) and raw_info:
        try:
            decoded = json.loads(raw_info)
        except ValueError:
            # The pixels are fine without it: kept, without seeds or a parameters chunk.
            decoded = None
            warnings.append(
                "the server's `info` field is not valid JSON: images saved without their "
                "seed and generation parameters"
            )
        info = decoded if isinstance(decoded, dict) else {}
    elif isinstance(raw_info, dict):  # some forks send it already decoded
        info = raw_info
    images_b64 = body.get("images") or []
    raw_seeds: Any = info.get("all_seeds")
    seeds = raw_seeds if isinstance(raw_seeds, list) else None
    raw_texts: Any = info.get("infotexts")
    infotexts: list[Any] = raw_texts if isinstance(raw_texts, list) else []
    first = info.get("index_of_first_image", 0)
    first = first if isinstance(first, int) and 0 <= first <= len(images_b64) else 0
    count = len(images_b64) - first
    if seeds is not None:
        count = min(count, len(seeds))  # extensions may append images with no seed
    images: list[GeneratedImage] = []
    problems: list[str] = []  # one broken image must not cost the others: they are kept
    for i in range(count):
        pos = first + i
        text = infotexts[pos] if pos < len(infotexts) and isinstance(infotexts[pos], str) else None
        seed = seeds[i] if seeds is not None and isinstance(seeds[i], int) else None
        try:
            data = decode_image(_as_str(images_b64[pos]), what=f"image {pos + 1}")
        except ApiError as exc:
            problems.append(exc.message)
            continue
        images.append(GeneratedImage(data=data, index=i, seed=seed, infotext=text))
    if problems and not images:
        raise ApiError(problems[0])
    extra = len(images_b64) - count  # a grid or an extension's image: not ours to save
    raw_params: Any = body.get("parameters")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    return GenerationResult(
        images=images,
        info=info,
        parameters=params,
        extra_images=extra,
        problems=problems,
        warnings=warnings,
    )


def parse_progress(body: Any) -> Progress:
    if not isinstance(body, dict):
        raise ApiError("the progress answer is not an object")
    raw_state: Any = body.get("state")
    state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
    return Progress(
        progress=opt_float(body.get("progress")) or 0.0,
        eta_relative=opt_float(body.get("eta_relative")) or 0.0,
        job_count=_int(state.get("job_count")),
        job_no=_int(state.get("job_no")),
        sampling_step=_int(state.get("sampling_step")),
        sampling_steps=_int(state.get("sampling_steps")),
        job=str(state.get("job") or ""),
        textinfo=body.get("textinfo") if isinstance(body.get("textinfo"), str) else None,
        interrupted=bool(state.get("interrupted")),
    )


def parse_model(item: Mapping[str, Any]) -> SdModel:
    def opt(key: str) -> str | None:
        value = item.get(key)
        return str(value) if value else None

    return SdModel(
        title=str(item.get("title") or item.get("model_name") or ""),
        model_name=str(item.get("model_name") or ""),
        filename=str(item.get("filename") or ""),
        hash=opt("hash"),
        sha256=opt("sha256"),
        config=opt("config"),
    )


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError("an image in the server's answer is not a base64 string")
    return value


def list_of_dicts(body: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise ApiError(f"the server's {what} answer is not a list")
    return [item for item in body if isinstance(item, dict)]


def opt_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_loras(body: Any) -> list[Lora]:
    return [
        Lora(
            name=_text(item.get("name")),
            alias=_text(item.get("alias")),
            path=_text(item.get("path")),
        )
        for item in list_of_dicts(body, "loras")
    ]


def parse_embeddings(body: Any) -> list[Embedding]:
    """{"loaded": {name: item}, "skipped": {name: item}}: both, in that order, each by name."""
    if not isinstance(body, dict):
        raise ApiError("the server's embeddings answer is not an object")
    found: list[Embedding] = []
    for key, loaded in (("loaded", True), ("skipped", False)):
        group = body.get(key) or {}
        if not isinstance(group, dict):
            raise ApiError(f"the server's embeddings answer has a `{key}` that is not an object")
        for name, item in group.items():
            item = item if isinstance(item, dict) else {}
            found.append(
                Embedding(
                    name=str(name),
                    loaded=loaded,
                    vectors=_opt_int(item.get("vectors")),
                    shape=_opt_int(item.get("shape")),
                    step=_opt_int(item.get("step")),
                    checkpoint=_opt_str(item.get("sd_checkpoint_name")),
                )
            )
    return found


def parse_styles(body: Any) -> list[PromptStyle]:
    return [
        PromptStyle(
            name=_text(item.get("name")),
            prompt=_text(item.get("prompt")),
            negative_prompt=_text(item.get("negative_prompt")),
        )
        for item in list_of_dicts(body, "prompt-styles")
    ]


def parse_vaes(body: Any) -> list[Vae]:
    return [
        Vae(name=_text(item.get("model_name")), filename=_text(item.get("filename")))
        for item in list_of_dicts(body, "sd-vae")
    ]


def parse_upscalers(body: Any) -> list[Upscaler]:
    return [
        Upscaler(
            name=_text(item.get("name")),
            model_name=_opt_str(item.get("model_name")),
            scale=opt_float(item.get("scale")),
            path=_opt_str(item.get("model_path")),
        )
        for item in list_of_dicts(body, "upscalers")
    ]


def parse_extras(body: Any, *, batch: bool) -> ExtrasResult:
    """`{"image"}` (single) or `{"images"}` (batch), each strictly decoded."""
    key = "images" if batch else "image"
    if not isinstance(body, dict) or key not in body:
        raise ApiError(f"the server's extras answer has no `{key}`")
    encoded = body[key] if batch else [body[key]]
    if not isinstance(encoded, list) or not all(isinstance(b, str) for b in encoded):
        raise ApiError(f"the server's extras answer has a `{key}` that is not base64 text")
    images = [decode_image(b, what=f"image {i + 1}") for i, b in enumerate(encoded)]
    html = body.get("html_info")
    return ExtrasResult(images=images, html_info=html if isinstance(html, str) else "")
