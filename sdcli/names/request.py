"""A job's names checked against the server before generating: the web UI silently replaces an
unknown name with a default, so sdcli checks first and sends the server's exact spelling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from sdcli.apitypes import SdModel
from sdcli.catalog import SDNEXT_HIRES_UPSCALER, Catalog, hires_defaults
from sdcli.client import OPTIONS_PATH
from sdcli.datatypes import frozen
from sdcli.errors import ApiError, NotFoundError
from sdcli.names.lookup import resolve_model, resolve_sampler, resolve_upscaler, split_combined
from sdcli.payload import build_payload


@frozen
class Resolved:
    """The names of a request as the server spells them, and what sdcli fills in itself."""

    sampler_name: str | None = None
    scheduler: str | None = None
    model: SdModel | None = None
    hr_upscaler: str | None = None  # the server's exact spelling
    clip_skip_field: bool = False  # clip skip as the request field `clip_skip` (SD.Next)
    notes: tuple[str, ...] = ()  # what could not be honoured or checked, said before generating
    defaults: Mapping[str, Any] = field(default_factory=dict)  # fields sdcli fills in itself
    defaults_notes: tuple[str, ...] = ()  # why, for --dry-run and --debug
    upscaler: str | None = None  # `--upscale NAME`: the extras upscaler as the server spells it


# SD.Next's `schedulers_sigma` choices (modules/ui_definitions.py, master 058a7f0cf)
SDNEXT_SIGMAS = ("default", "karras", "betas", "exponential", "lambdas", "flowmatch")


def resolve_names(
    values: Mapping[str, Any], catalog: Catalog, sets: Mapping[str, Any] | None = None
) -> Resolved:
    """Check sampler, scheduler, model and hires upscaler against the server before generating.

    A list the server fails to give (a 5xx) does not stop the run: the name is sent as typed, and
    a note says it could not be checked. A name missing from a cached list is looked up once more
    in the server's own list before it is called unknown (it may be new since).
    """
    try:
        return _resolve_names(values, catalog, sets)
    except NotFoundError:
        if not catalog.refetch():
            raise
    return _resolve_names(values, catalog, sets)


def _resolve_names(
    values: Mapping[str, Any], catalog: Catalog, sets: Mapping[str, Any] | None = None
) -> Resolved:
    sampler, scheduler = values.get("sampler"), values.get("scheduler")
    sampler_name = scheduler_label = None
    notes: list[str] = []
    sdnext = bool(sampler or scheduler or values.get("clip_skip") is not None) and (
        catalog.is_sdnext()
    )
    if sampler or scheduler:
        schedulers = catalog.schedulers()
        samplers = catalog.samplers_or_none()
        if samplers is None:
            sampler_name, scheduler_label = _unchecked(sampler, scheduler, split_combined)
            notes.append(_cannot_check("sampler", sampler or "", catalog.broken["samplers"]))
        else:
            sampler_name, scheduler_label = resolve_sampler(
                sampler, scheduler, samplers, schedulers
            )
        if scheduler_label is not None and sdnext:
            notes.append(_sdnext_schedule_note(scheduler_label))
            scheduler_label = None
        elif scheduler_label is not None and "schedulers" in catalog.broken:
            notes.append(_cannot_check("scheduler", scheduler_label, catalog.broken["schedulers"]))
    model = resolve_model(str(values["model"]), catalog.models()) if values.get("model") else None
    # Hires fields come from a preset's [params] or --set: look at the body they make.
    body = build_payload(values, "", sets=sets)
    hr_upscaler = None
    hires = is_on(body.get("enable_hr"))
    defaults, why = hires_defaults(body, catalog) if hires else ({}, [])
    wanted = body.get("hr_upscaler") or defaults.get("hr_upscaler") if hires else None
    if wanted:
        try:
            hr_upscaler = resolve_upscaler(str(wanted), catalog.upscalers())
        except NotFoundError as exc:
            if str(wanted).strip().lower() == "latent" and catalog.is_sdnext():
                exc.hint = f"SD.Next calls it {SDNEXT_HIRES_UPSCALER!r}"
            raise
    clip_skip_field = values.get("clip_skip") is not None and sdnext
    upscaler = _extras_upscaler(values, catalog)
    return Resolved(
        sampler_name,
        scheduler_label,
        model,
        hr_upscaler,
        clip_skip_field,
        tuple(notes),
        defaults,
        tuple(why),
        upscaler,
    )


def _extras_upscaler(values: Mapping[str, Any], catalog: Catalog) -> str | None:
    """`--upscale NAME:2`: NAME among what the extras tab takes, before anything is generated."""
    if not values.get("upscale"):
        return None
    from sdcli.names.listed import resolve_listed
    from sdcli.payload import parse_upscale

    name, _, _ = parse_upscale(str(values["upscale"]))
    return resolve_listed(name, catalog.extras_upscalers(), "upscaler")


def _unchecked(
    sampler: str | None,
    scheduler: str | None,
    split: Callable[[str], tuple[str, str] | None],
) -> tuple[str | None, str | None]:
    """Without the server's list: send as typed, an old combined name split in two."""
    wanted = (scheduler or "").strip() or None
    if sampler and wanted is None:
        parts = split(sampler)
        if parts is not None:
            return parts[0], parts[1]
    if wanted is not None and wanted.lower() == "automatic":
        wanted = None
    return (sampler.strip() if sampler else None), wanted


def _cannot_check(what: str, name: str, error: ApiError) -> str:
    return (
        f"cannot check {what} {name!r}: the server failed to list them "
        f"({error.status}: {error.detail or error.message}); sent as typed"
    )


def _sdnext_schedule_note(label: str) -> str:
    sigma = label.strip().lower()
    how = (
        f'POST {OPTIONS_PATH} {{"schedulers_sigma": "{sigma}"}}'
        if sigma in SDNEXT_SIGMAS
        else "its setting schedulers_sigma (" + ", ".join(SDNEXT_SIGMAS) + ")"
    )
    return (
        f"SD.Next cannot apply scheduler {label!r} per request (its setting schedulers_sigma "
        f"picks the schedule for every job): not sent; to use it, set it on the server: {how}"
    )


def is_on(value: Any) -> bool:
    """A request flag as the server's lax validation reads it (true, 1, "true", "yes", …)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "on", "t", "true", "y", "yes")
    return bool(value)
