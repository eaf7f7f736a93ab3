"""What a web UI is and holds right now: the `sdcli info` and `set-model` use cases.

Reading is lenient: a piece the server does not expose is reported as unknown, and the first
failure that makes the rest pointless (unreachable, refused credentials) stops the gathering but
keeps what was learnt, so the CLI can still show it before reporting the error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from sdcli.apitypes import SdModel
from sdcli.catalog import is_forge_options, is_sdnext
from sdcli.client import PROBES
from sdcli.datatypes import frozen, mutable
from sdcli.errors import ApiError, AuthError, ConnectionFailed, SdcliError
from sdcli.names.lookup import checkpoint_option, is_same_model, loaded_model, loaded_title

if TYPE_CHECKING:
    from sdcli.client import WebUIClient


@mutable
class ServerInfo:
    """Everything `sdcli info` shows about a server; None means "not known"."""

    url: str
    url_source: str = "default"
    reachable: bool = False
    answered: bool = False  # the API itself answered (options read), so the rest is meaningful
    version: str | None = None
    version_source: str | None = None
    flavour: Flavour | None = None
    current_model: str | None = None
    clip_skip: int | float | None = None
    models: int | None = None
    samplers: int | None = None
    schedulers: int | None = None
    has_schedulers: bool | None = None
    busy: bool | None = None
    job: str | None = None
    progress: float | None = None
    error: SdcliError | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `--json`; `error` is the message of what stopped the gathering."""
        return {
            "url": self.url,
            "url_source": self.url_source,
            "reachable": self.reachable,
            "flavour": self.flavour.name if self.flavour else None,
            "mode": self.flavour.mode if self.flavour else None,
            "version": self.version,
            "version_source": self.version_source,
            "current_model": self.current_model,
            "clip_skip": self.clip_skip,
            "models": self.models,
            "samplers": self.samplers,
            "schedulers": self.schedulers,
            "busy": self.busy,
            "job": self.job,
            "progress": self.progress,
            "error": str(self.error) if self.error is not None else None,
        }


def plain_number(value: Any) -> int | float | None:
    """2.0 -> 2 (the web UI stores some integer options as floats); non-numbers -> None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


# Forge only records the choice of a checkpoint; it loads it when the next generation starts.
FORGE_SELECTED = "selected, loads at the next generation"


def gather(client: WebUIClient, *, url_source: str = "default") -> ServerInfo:
    """Ask the server what it is and holds; never raises.

    A failure that stops everything (unreachable, refused, no API at all) goes into `.error`; an
    endpoint that merely fails leaves its item unknown and adds a line to `.warnings`.
    """
    info = ServerInfo(url=client.base_url, url_source=url_source)
    try:
        options = client.get_options()
    except SdcliError as exc:
        info.reachable = not isinstance(exc, ConnectionFailed)
        info.error = exc
        return info
    info.reachable = info.answered = True
    # SD.Next's GET /options holds only what was set; its own key is `clip_skip`
    info.clip_skip = plain_number(options.get("CLIP_stop_at_last_layers", options.get("clip_skip")))
    info.current_model = checkpoint_option(options)

    def models() -> None:
        found = client.sd_models()
        info.models = len(found)
        model = loaded_model(info.current_model, found)
        if model is not None:
            info.current_model = model.title

    def samplers() -> None:
        info.samplers = len(client.samplers())
        if is_sdnext(client):
            # no per-request schedule there (and its /schedulers fails its own response model)
            info.has_schedulers = False
            return
        schedulers = client.schedulers()
        info.has_schedulers = schedulers is not None
        info.schedulers = len(schedulers) if schedulers is not None else None

    def progress() -> None:
        state = client.progress(skip_current_image=True)
        info.busy = not state.idle
        if info.busy:
            info.job = state.job or None
            info.progress = state.progress

    def flavour() -> None:
        found = detect_flavour(client, options=options, has_schedulers=info.has_schedulers)
        info.flavour = found
        info.version, info.version_source = found.version, found.version_source
        if found.name == "sdnext":
            # its option keeps a name that failed to load: /checkpoint says what is loaded
            info.current_model = current_checkpoint(client)

    for what, step in (
        ("checkpoints", models),
        ("samplers", samplers),
        ("progress", progress),
        ("flavour and version", flavour),
    ):
        try:
            step()
        except (ConnectionFailed, AuthError) as exc:
            info.error = exc
            break
        except SdcliError as exc:
            info.warnings.append(f"cannot read the {what}: {exc}")
    return info


FLAVOUR_LABELS = {
    "a1111": "AUTOMATIC1111",
    "reforge": "reForge",
    "forge": "Forge",
    "sdnext": "SD.Next",
}


@frozen
class Flavour:
    """Which web UI answers, as far as its API shows it (webui-api.md §9); None: cannot tell."""

    name: str  # a key of FLAVOUR_LABELS
    ui_mode: bool | None = None  # False: API only (--nowebui, --api-only): no /internal/* routes
    version: str | None = None
    version_source: str | None = None
    has_schedulers: bool | None = None  # GET /sdapi/v1/schedulers exists (A1111 1.9.1+)

    @property
    def label(self) -> str:
        return FLAVOUR_LABELS.get(self.name, self.name)

    @property
    def mode(self) -> str | None:
        return None if self.ui_mode is None else "ui" if self.ui_mode else "api-only"

    def describe(self) -> str:
        """E.g. "AUTOMATIC1111 1.9.1 or later (API only, --nowebui)"."""
        text = self.label
        if self.version is None and self.name == "a1111" and self.has_schedulers is not None:
            text += " 1.9.1 or later" if self.has_schedulers else " before 1.9.1"
        if self.ui_mode is True:
            text += " (UI mode)"
        elif self.ui_mode is False:
            text += " (API only, --nowebui)"
        return text


def detect_flavour(
    client: WebUIClient,
    *,
    options: Mapping[str, Any] | None = None,
    has_schedulers: bool | None = None,
) -> Flavour:
    """Tell A1111, reForge, Forge and SD.Next apart with a few cached GETs (webui-api.md §9).

    SD.Next has /sdapi/v1/version (asked first: `{"app": "sd.next", ...}`) and always serves its
    UI; Forge has `forge_*` options (and /sd-modules); reForge has `reforge_*` options and
    otherwise A1111's API; UI mode has /internal/ping. The version comes
    from SD.Next's /version or, in UI mode, /internal/sysinfo; A1111 in --nowebui mode does not
    expose it, so only "1.9.1 or later" (it has /schedulers) or "before 1.9.1" can be said.
    `options` and `has_schedulers` save a GET each when the caller already knows them.
    """
    sdnext = client.probe("version")
    if isinstance(sdnext, dict):
        # SD.Next always serves its UI (it has no /internal/ping to probe for it)
        version = _version_sdnext(sdnext)
        return Flavour(
            name="sdnext",
            ui_mode=True,
            version=version,
            version_source=PROBES["version"] if version else None,
            has_schedulers=False,
        )
    if options is None:
        answer = client.probe("options")
        options = answer if isinstance(answer, dict) else None
    keys = list(options or ())
    if any(k.startswith("reforge_") for k in keys):
        name = "reforge"
    elif options is not None:
        name = "forge" if is_forge_options(options) else "a1111"
    else:  # the options could not be read: Forge replaced /sd-vae with /sd-modules
        name = "forge" if client.exists("sd-modules") else "a1111"
    ui_mode = client.exists("ping")
    if has_schedulers is None:
        has_schedulers = client.exists("schedulers")
    version = source = None
    if ui_mode:
        version, source = _version_sysinfo(client.probe("sysinfo")), PROBES["sysinfo"]
    return Flavour(
        name=name,
        ui_mode=ui_mode,
        version=version,
        version_source=source if version else None,
        has_schedulers=has_schedulers,
    )


def _version_sdnext(body: Any) -> str | None:
    """`{"app": "sd.next", "updated": "2026-07-23", "commit": "058a7f0cf", "branch": "master"}`
    -> "2026-07-23 (058a7f0cf, master)"; older releases said `version` or `hash`."""
    if not isinstance(body, dict):
        return None

    def text(key: str) -> str | None:
        value = body.get(key)
        return value if isinstance(value, str) and value and value != "unknown" else None

    main = text("version") or text("updated")
    extra = [x for x in (text("commit") or text("hash"), text("branch")) if x]
    if main is None:
        return extra[0] if extra else None
    return f"{main} ({', '.join(extra)})" if extra else main


def _version_sysinfo(body: Any) -> str | None:
    # Only "Version" is read: the dump also holds the command line, which may carry credentials.
    if isinstance(body, dict):
        value = body.get("Version")
        if isinstance(value, str) and value:
            return value
    return None


def current_checkpoint(client: WebUIClient) -> str | None:
    """The server's `sd_model_checkpoint` option: a title, or the bare alias a client sent.

    SD.Next keeps the option even when the model failed to load: there GET /checkpoint says
    what is loaded (None when nothing is).
    """
    if is_sdnext(client):
        loaded = client.checkpoint()
        if loaded is not None:
            title = loaded.get("title") if loaded.get("type") else None
            return str(title) if title else None
    return checkpoint_option(client.get_options())


def switch_model(client: WebUIClient, model: SdModel) -> str:
    """Send the exact title, then check the server really took it; return the loaded title.

    The web UI answers 200 even when the load failed: it reverts the option and logs the error,
    so the option is read back (webui-api.md §7.2). SD.Next keeps the option but loads nothing,
    so there GET /sdapi/v1/checkpoint says what is loaded.
    """
    client.set_options({"sd_model_checkpoint": model.title})
    after = current_checkpoint(client)
    if not is_same_model(after, model):
        still = f"it still has {after!r}" if after else "no model is loaded"
        raise ApiError(
            f"the server did not load {model.title!r}: {still}",
            hint="the load failed on the server; its console says why (e.g. a bad file)",
        )
    return loaded_title(after, model)
