"""The server's lists, fetched once per process, and the checks of names against them before
generating (the web UI silently replaces an unknown name with a default, so sdcli checks first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdcli.apitypes import Sampler, Scheduler, SdModel
from sdcli.payload import build_payload

if TYPE_CHECKING:
    from sdcli.client import WebUIClient


class Catalog:
    """The server's lists, fetched at most once per process and only when a name needs them."""

    def __init__(self, client: WebUIClient) -> None:
        self.client = client
        # How each list is fetched: a generator puts its --retries here.
        self.fetch: Callable[[Callable[[], Any]], Any] = _once
        self._samplers: list[Sampler] | None = None
        self._schedulers: list[Scheduler] | None = None
        self._schedulers_known = False
        self._models: list[SdModel] | None = None
        self._upscalers: list[str] | None = None
        self._options: dict[str, Any] | None = None
        self._sdnext: bool | None = None

    def samplers(self) -> list[Sampler]:
        if self._samplers is None:
            self._samplers = self.fetch(self.client.samplers)
        return self._samplers

    def schedulers(self) -> list[Scheduler] | None:
        if not self._schedulers_known:
            self._schedulers = self.fetch(self.client.schedulers)
            self._schedulers_known = True
        return self._schedulers

    def models(self) -> list[SdModel]:
        if self._models is None:
            self._models = self.fetch(self.client.sd_models)
        return self._models

    def upscalers(self) -> list[str]:
        """Hires upscalers: /upscalers plus /latent-upscale-modes (absent on some forks)."""
        if self._upscalers is None:
            self._upscalers = self.fetch(self.client.upscalers)
        return self._upscalers

    def options(self) -> dict[str, Any]:
        """GET /options as the process first saw it: asked only for hires fix or an override."""
        if self._options is None:
            self._options = self.fetch(self.client.get_options)
        return self._options

    def is_forge(self) -> bool:
        """Forge: its own `forge_*` settings (webui-api.md §9)."""
        from sdcli.serverinfo import is_forge_options

        return is_forge_options(self.options())

    def is_sdnext(self) -> bool:
        """SD.Next: clip skip is a request field; no per-request schedule, no task ids."""
        if self._sdnext is None:
            if self._schedulers_known and self._schedulers is not None:
                self._sdnext = False  # SD.Next has no /schedulers: no need to ask /version
            else:
                from sdcli.serverinfo import is_sdnext

                self._sdnext = bool(self.fetch(lambda: is_sdnext(self.client)))
        return self._sdnext

    @property
    def known_sdnext(self) -> bool:
        """Whether this is SD.Next as far as already asked (never sends a request)."""
        return self._sdnext is True


def _once(call: Callable[[], Any]) -> Any:
    return call()


# The web UI's own hires fix default, which its API lacks (a 500 after the first pass without it).
HIRES_DENOISING = 0.7
FORGE_HR_MODULES = ["Use same choices"]  # Forge's UI default; its API has none (a 500 without)


@dataclass(frozen=True)
class Resolved:
    sampler_name: str | None = None
    scheduler: str | None = None
    model: SdModel | None = None
    hr_upscaler: str | None = None  # the server's exact spelling
    clip_skip_field: bool = False  # send `clip_skip` too (SD.Next)
    notes: tuple[str, ...] = ()  # what could not be honoured, said before generating
    defaults: Mapping[str, Any] = field(default_factory=dict)  # fields sdcli fills in itself
    defaults_notes: tuple[str, ...] = ()  # why, for --dry-run and --debug


def resolve_names(
    values: Mapping[str, Any], catalog: Catalog, sets: Mapping[str, Any] | None = None
) -> Resolved:
    """Check sampler, scheduler, model and hires upscaler against the server before generating."""
    from sdcli.resolve import resolve_model, resolve_sampler, resolve_upscaler

    sampler, scheduler = values.get("sampler"), values.get("scheduler")
    sampler_name = scheduler_label = None
    notes: list[str] = []
    if sampler or scheduler:
        schedulers = catalog.schedulers()
        sampler_name, scheduler_label = resolve_sampler(
            sampler, scheduler, catalog.samplers(), schedulers
        )
        if schedulers is None and scheduler_label is not None and catalog.is_sdnext():
            notes.append(
                f"SD.Next has no per-request schedule type (its settings pick it): "
                f"scheduler {scheduler_label!r} not sent"
            )
            scheduler_label = None
    model = resolve_model(str(values["model"]), catalog.models()) if values.get("model") else None
    # Hires fields come from a preset's [params] or --set: look at the body they make.
    body = build_payload(values, "", sets=sets)
    hr_upscaler = None
    if is_on(body.get("enable_hr")) and body.get("hr_upscaler"):
        hr_upscaler = resolve_upscaler(str(body["hr_upscaler"]), catalog.upscalers())
    clip_skip_field = values.get("clip_skip") is not None and catalog.is_sdnext()
    defaults, why = hires_defaults(body, catalog) if is_on(body.get("enable_hr")) else ({}, [])
    return Resolved(
        sampler_name,
        scheduler_label,
        model,
        hr_upscaler,
        clip_skip_field,
        tuple(notes),
        defaults,
        tuple(why),
    )


def hires_defaults(body: Mapping[str, Any], catalog: Catalog) -> tuple[dict[str, Any], list[str]]:
    """Hires fix fields the API leaves without a usable default, filled as the web UI's form does.

    A1111 and Forge fail with a 500 after the whole first pass without `denoising_strength`;
    Forge also without `hr_additional_modules`, and its `hr_cfg` defaults to 1.0, which drops the
    negative prompt from the hires pass (fixtures/forge/txt2img-hires.json).
    """
    defaults: dict[str, Any] = {}
    why: list[str] = []
    if "denoising_strength" not in body and not catalog.is_sdnext():
        defaults["denoising_strength"] = HIRES_DENOISING
        why.append(
            f"hires fix without denoising_strength: sending the web UI's default "
            f"{HIRES_DENOISING} (the API has none and fails after the first pass)"
        )
    if not catalog.is_forge():
        return defaults, why
    if "hr_additional_modules" not in body:
        defaults["hr_additional_modules"] = list(FORGE_HR_MODULES)
        why.append(
            'Forge: sending hr_additional_modules ["Use same choices"] (its API has no default)'
        )
    if "hr_cfg" not in body:
        cfg = body.get("cfg_scale", 7.0)
        defaults["hr_cfg"] = cfg
        shown = f"{cfg:g}" if isinstance(cfg, float) else str(cfg)
        why.append(f"Forge: sending hr_cfg {shown} like cfg_scale (its API defaults it to 1.0)")
    return defaults, why


def is_on(value: Any) -> bool:
    """A request flag as the server's lax validation reads it (true, 1, "true", "yes", …)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "on", "t", "true", "y", "yes")
    return bool(value)
