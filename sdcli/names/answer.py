"""Checks of the server's answer against the request: the web UI answers 200 even when it ignored
what we asked (sampler, clip skip, model, schedule type, size), so these say so as warnings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sdcli.apitypes import GenerationResult
from sdcli.catalog import Catalog
from sdcli.errors import SdcliError
from sdcli.names.request import Resolved, is_on


def check_result(
    payload: Mapping[str, Any],
    resolved: Resolved,
    result: GenerationResult,
    catalog: Catalog,
    warn: Callable[[str], None],
) -> None:
    """The web UI answers 200 even when it ignored what we asked: say so."""
    info = result.info
    want_sampler = payload.get("sampler_name")
    got_sampler = info.get("sampler_name")
    if want_sampler and got_sampler and str(got_sampler) != str(want_sampler):
        warn(f"the server used sampler {got_sampler!r} instead of {want_sampler!r}")
    overrides = payload.get("override_settings") or {}
    want_clip = payload.get("clip_skip", overrides.get("CLIP_stop_at_last_layers"))
    got_clip = info.get("clip_skip")
    if want_clip is not None and got_clip is not None and int(got_clip) != int(want_clip):
        warn(f"the server used clip skip {got_clip} instead of {want_clip}")
    model = resolved.model
    got_name, got_hash = answer_model(result), info.get("sd_model_hash")
    if model and (got_name or got_hash):
        stem = Path(model.name.replace("\\", "/")).stem
        if (got_hash and model.hash and got_hash != model.hash) or (
            not (got_hash and model.hash) and got_name and got_name != stem
        ):
            warn(f"the server used model {got_name or got_hash!r} instead of {model.title!r}")
    elif model is None and (got_name or got_hash) and is_forge_answer(result):
        _check_forge_selection(got_name, got_hash, catalog, warn)
    _check_schedule(payload, result, catalog, warn)
    check_size(payload, result, warn)


def answer_model(result: GenerationResult) -> str | None:
    """The model the answer names: `info.sd_model_name`, or the infotext's `Model` (SD.Next)."""
    name = result.info.get("sd_model_name")
    if isinstance(name, str) and name:
        return name
    from sdcli.infotext import parse_infotext

    texts = [image.infotext for image in result.images if image.infotext]
    return parse_infotext(texts[0]).model if texts else None


def is_forge_answer(result: GenerationResult) -> bool:
    """Forge's answers echo its own request fields and carry its version (`f2.0.1v1.10.1…`)."""
    version = str(result.info.get("version") or "")
    return "distilled_cfg_scale" in result.parameters or (
        version[:1] == "f" and version[1:2].isdigit()
    )


def _check_forge_selection(
    got_name: Any, got_hash: Any, catalog: Catalog, warn: Callable[[str], None]
) -> None:
    """Forge loads the selected checkpoint only when a job starts, and when the selected title
    matches no file it silently falls back to another one while GET /options still names the
    selected one (fixtures/forge/README.md): compare the image's model with the selection."""
    from sdcli.names.lookup import checkpoint_option

    try:
        selected = checkpoint_option(catalog.options())
    except SdcliError:
        return
    if not selected:
        return
    name, _, rest = selected.partition(" [")
    want_hash = rest.rstrip("]").lower() if rest else None
    stem = Path(name.replace("\\", "/")).stem
    if got_hash and want_hash:
        same = str(got_hash).lower() == want_hash
    else:
        same = not got_name or str(got_name) == stem
    if not same:
        warn(
            f"Forge made this image with {got_name or got_hash!r}, not the selected {selected!r}"
            " (it could not load the selection and fell back; its console says why)"
        )


def _check_schedule(
    payload: Mapping[str, Any],
    result: GenerationResult,
    catalog: Catalog,
    warn: Callable[[str], None],
) -> None:
    """An unknown scheduler silently becomes Automatic: compare with the infotext's."""
    from sdcli.infotext import parse_infotext
    from sdcli.names.lookup import same_name

    want = payload.get("scheduler")
    if not isinstance(want, str) or not want.strip() or same_name(want, "automatic"):
        return  # "Automatic" shows as the sampler's own schedule (e.g. Karras): not a change
    texts = [image.infotext for image in result.images if image.infotext]
    got = parse_infotext(texts[0]).scheduler if texts else None
    if got is None or same_name(got, want):
        return
    label = want
    with contextlib.suppress(SdcliError):  # only a name sent as typed (--set) needs the list
        from sdcli.names.lookup import resolve_scheduler

        schedulers = catalog.schedulers()
        if schedulers is not None:
            label = resolve_scheduler(want, schedulers).label
    if not same_name(got, label):
        warn(f"the server used schedule type {got!r} instead of {want!r}")


def check_size(
    payload: Mapping[str, Any], result: GenerationResult, warn: Callable[[str], None]
) -> None:
    """The size is read from each image (PNG or JPEG): `info.width/height` repeat the request's.

    With hires fix the image should be the second pass's size: a server that ignored hires (SD.Next
    without `hr_resize_mode`) shows here too.
    """
    from sdcli.pngmeta import image_size

    want = (_opt_int(payload.get("width")), _opt_int(payload.get("height")))
    hires = is_on(payload.get("enable_hr"))
    if hires:
        want = _hires_size(payload, want)
    if want == (None, None):
        return  # the server's default size was asked for, whatever it is
    for image in result.images:
        got = image_size(image.data)
        if got is None:
            continue  # WebP or GIF; a broken image is reported on saving
        # the second pass rounds its size down to a multiple of 8 on its own
        if all(
            w is None or g == w or (hires and g == w // 8 * 8)
            for w, g in zip(want, got, strict=True)
        ):
            continue
        if None not in want:
            asked = f"{want[0]}x{want[1]}"
        elif want[0] is not None:
            asked = f"width {want[0]}"
        else:
            asked = f"height {want[1]}"
        why = ""
        if hires:
            asked = f"hires fix size {asked}"
            why = " (did the server ignore hires fix?)"
        elif any(w is not None and w % 8 for w in want):
            why = " (the web UI rounds sizes down to multiples of 8)"
        warn(f"the server made a {got[0]}x{got[1]} image, not the {asked} asked for{why}")
        return


def _hires_size(
    payload: Mapping[str, Any], first: tuple[int | None, int | None]
) -> tuple[int | None, int | None]:
    """The second pass's size: hr_resize_x/y if given, else the first pass's times hr_scale."""
    rx, ry = _opt_int(payload.get("hr_resize_x")) or 0, _opt_int(payload.get("hr_resize_y")) or 0
    width, height = first
    if rx or ry:
        if width is None or height is None:
            return (rx or None, ry or None)
        return (rx or ry * width // height, ry or rx * height // width)
    try:
        scale = float(payload.get("hr_scale", 2.0))
    except (TypeError, ValueError):
        return (None, None)
    return (
        None if width is None else int(width * scale),
        None if height is None else int(height * scale),
    )


def _opt_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
