"""Server flavours the fake can imitate, as flags: behaviour differs by fork and version (§9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

ErrorStyle = Literal["webui", "fastapi", "sdnext"]
ValidationStyle = Literal["pydantic1", "pydantic2"]
SamplerCatalog = Literal["a1111-1.10", "a1111-1.8", "forge", "sdnext"]


def _frozen(**items: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(items))


@dataclass(frozen=True)
class Profile:
    """What one server flavour does differently; everything else is A1111 v1.10.1."""

    name: str
    version: str
    description: str
    family: Literal["a1111", "sdnext"] = "a1111"  # sdnext: handlers of fake_sdnext (its own code)
    ui_mode: bool = True  # /internal/* routes exist (Gradio UI mode, not --nowebui)
    has_schedulers: bool = True  # GET /schedulers and the `scheduler`/`hr_scheduler` fields
    combined_sampler_names: bool = True  # "DPM++ 2M Karras" -> sampler + scheduler (1.10)
    strict_sampler: bool = False  # unknown sampler -> 404 "Sampler not found" (<=1.9, SD.Next)
    sampler_catalog: SamplerCatalog = "a1111-1.10"
    error_style: ErrorStyle = "webui"
    validation_style: ValidationStyle = "pydantic1"
    process_time_header: bool = True
    lazy_model_load: bool = False  # POST /options only records the choice (Forge)
    auth_challenge: bool = False  # 401 keeps FastAPI's WWW-Authenticate header (no webui handler)
    options_response: Literal["null", "updated"] = "null"
    sampler_options_as_strings: bool = True  # /samplers `options` values are str() in A1111
    model_type_field: bool = False  # /sd-models items carry `type` (SD.Next)
    removed_routes: frozenset[str] = frozenset()
    extra_get_routes: frozenset[str] = frozenset()
    removed_fields: frozenset[str] = frozenset()  # request-model fields this version lacks
    extra_fields: Mapping[str, tuple[str, Any]] = field(
        default_factory=_frozen
    )  # name: (kind, default)
    default_overrides: Mapping[str, Any] = field(default_factory=_frozen)  # request defaults
    extra_options: Mapping[str, Any] = field(default_factory=_frozen)
    default_port: int = 7860
    # hires fix with no denoising_strength: 500 TypeError after the first pass (A1111, Forge)
    hires_needs_denoising: bool = False
    # Forge's hires pass: `hr_additional_modules` has no default (500 without it), `hr_cfg` 1.0
    forge_hires: bool = False


_V = "/sdapi/v1/"

A1111 = Profile(
    name="a1111",
    version="v1.10.1",
    description="AUTOMATIC1111 v1.10.1, UI mode (--api)",
    hires_needs_denoising=True,
)

A1111_NOWEBUI = Profile(
    name="a1111-nowebui",
    version="v1.10.1",
    description="AUTOMATIC1111 v1.10.1, API only (--nowebui): no /internal/* routes",
    ui_mode=False,
    default_port=7861,
    hires_needs_denoising=True,
)

A1111_18 = Profile(
    name="a1111-1.8",
    version="v1.8.0",
    description="AUTOMATIC1111 v1.8.0: combined sampler names, no schedulers, strict samplers",
    has_schedulers=False,
    combined_sampler_names=False,
    strict_sampler=True,
    sampler_catalog="a1111-1.8",
    removed_routes=frozenset({_V + "schedulers"}),
    removed_fields=frozenset({"scheduler", "hr_scheduler"}),
    hires_needs_denoising=True,
)

FORGE = Profile(
    name="forge",
    version="f2.0.1v1.10.1",
    description="Forge 2.0.1 (Gradio 4, pydantic 2): FastAPI error bodies, lazy model load",
    sampler_catalog="forge",
    error_style="fastapi",
    validation_style="pydantic2",
    process_time_header=False,
    lazy_model_load=True,
    auth_challenge=True,
    sampler_options_as_strings=False,
    removed_routes=frozenset(
        {_V + "sd-vae", _V + "train/embedding", _V + "train/hypernetwork"},
    ),
    extra_get_routes=frozenset({_V + "sd-modules"}),
    extra_fields=_frozen(
        distilled_cfg_scale=("number", 3.5),
        hr_cfg=("number", 1.0),
        hr_distilled_cfg=("number", 3.5),
        hr_additional_modules=("array", None),
    ),
    extra_options=_frozen(
        forge_preset="sd",
        forge_additional_modules=[],
        forge_unet_storage_dtype="Automatic",
        forge_inference_memory=1024,
        forge_async_loading="Queue",
        forge_pin_shared_memory="CPU",
    ),
    hires_needs_denoising=True,
    forge_hires=True,
)

SDNEXT = Profile(
    name="sdnext",
    version="058a7f0cf",
    description="SD.Next (vladmandic/sdnext master 058a7f0cf, 2026-07-23), as captured live",
    family="sdnext",
    ui_mode=False,  # it serves its UI, but has no /internal/* routes
    has_schedulers=False,  # no `scheduler` field; GET /schedulers answers 500 (fake_sdnext)
    combined_sampler_names=False,
    strict_sampler=True,
    sampler_catalog="sdnext",
    error_style="sdnext",
    validation_style="pydantic2",
    process_time_header=False,
    options_response="updated",
    model_type_field=True,
    removed_routes=frozenset(
        {
            _V + "latent-upscale-modes",
            _V + "realesrgan-models",
            _V + "refresh-embeddings",
            _V + "create/embedding",
            _V + "create/hypernetwork",
            _V + "train/embedding",
            _V + "train/hypernetwork",
        }
    ),
    extra_get_routes=frozenset({_V + "status", _V + "platform"}),
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.name: p for p in (A1111, A1111_NOWEBUI, A1111_18, FORGE, SDNEXT)}
)


def get_profile(name: str) -> Profile:
    """Look a flavour up by name, listing the known ones when it is not there."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
