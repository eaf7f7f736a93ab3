"""WebUIClient: the only module that speaks HTTP. Every failure leaves it as an SdcliError."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sdcli.apiparse import (
    connection_error,
    decode_answer,
    encode_image,
    exception_reason,
    list_of_dicts,
    parse_embeddings,
    parse_extras,
    parse_generation,
    parse_loras,
    parse_model,
    parse_png_info,
    parse_progress,
    parse_samplers,
    parse_schedulers,
    parse_styles,
    parse_task_progress,
    parse_upscalers,
    parse_vaes,
)
from sdcli.apitypes import (
    GenerationResult,
    PngInfo,
    Progress,
    Sampler,
    Scheduler,
    SdModel,
    TaskProgress,
)
from sdcli.errors import (
    ApiError,
    AuthError,
    ConnectionFailed,
    SdcliError,
    ServerTimeout,
    UsageError,
)

if TYPE_CHECKING:
    import requests

    from sdcli.config import Settings
    from sdcli.listtypes import Embedding, ExtrasResult, Lora, PromptStyle, Upscaler, Vae

# HTTP traffic summaries for --debug: method, path, status, size, time. Never headers or bodies,
# so credentials cannot leak into a log.
log = logging.getLogger("sdcli.http")

API = "/sdapi/v1"
# A refused port -> where the same web UI may be listening instead (API-only mode's default).
ALTERNATE_PORTS = {7860: 7861}
GENERATE_PATHS = {"txt2img": f"{API}/txt2img", "img2img": f"{API}/img2img"}  # by job mode
QUICK_READ_TIMEOUT = 30.0  # list endpoints and progress never take the queue lock
POLL_READ_TIMEOUT = 10.0
RefreshKind = Literal["checkpoints", "loras", "embeddings", "vae"]
REFRESH_PATHS: dict[str, str] = {
    "checkpoints": "refresh-checkpoints",
    "loras": "refresh-loras",
    "embeddings": "refresh-embeddings",
    "vae": "refresh-vae",
}
PROBE_READ_TIMEOUT = 10.0  # /internal/sysinfo gathers a lot; the version is not worth a wait
OPTIONS_PATH = f"{API}/options"
LORAS_PATH = f"{API}/loras"  # the Lora extension's (absent when it is off)
VAE_PATH = f"{API}/sd-vae"  # absent on Forge

# Endpoints only some flavours or modes have: which ones answer tells the flavour (webui-api.md §9)
PROBES = {
    "version": f"{API}/version",  # SD.Next only: {"app": "sd.next", ...}
    "options": OPTIONS_PATH,
    "sd-modules": f"{API}/sd-modules",  # Forge (it replaced /sd-vae)
    "schedulers": f"{API}/schedulers",  # A1111 1.9.1+
    "ping": "/internal/ping",  # UI mode only (not --nowebui)
    "sysinfo": "/internal/sysinfo",  # UI mode: holds the version
}
_ABSENT, _BROKEN = object(), object()


class WebUIClient:
    """A web UI API client over one keep-alive `requests.Session` per process."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        quick_timeout: float = QUICK_READ_TIMEOUT,
        session: requests.Session | None = None,
        unknown_host: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.unknown_host = unknown_host  # (message, hint) if the host name does not resolve
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.quick_timeout = quick_timeout  # calls that never wait in the queue (lists, options)
        self._session = session
        self._auth = auth
        self.sent_auth = auth is not None
        self._probes: dict[str, Any] = {}  # PROBES key -> body, _ABSENT or _BROKEN

    @classmethod
    def from_settings(cls, settings: Settings, *, quick: float | None = None) -> WebUIClient:
        """The client for the configured server; `quick` bounds every wait (completion's)."""
        if quick is not None:
            return cls(
                settings.url,
                auth=settings.auth,
                timeout=quick,
                connect_timeout=quick,
                quick_timeout=quick,
                unknown_host=settings.unknown_host,
            )
        return cls(
            settings.url,
            auth=settings.auth,
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
            unknown_host=settings.unknown_host,
        )

    @property
    def session(self) -> requests.Session:
        """Created on first use so commands that never talk HTTP never import requests."""
        if self._session is None:
            import requests

            from sdcli.deadline import DeadlineAdapter

            self._session = requests.Session()
            for prefix in ("http://", "https://"):  # so --timeout bounds whole answers
                self._session.mount(prefix, DeadlineAdapter())
            # The web UI sends no WWW-Authenticate challenge: credentials must go preemptively.
            if self._auth is not None:
                self._session.auth = self._auth
            self._session.headers["User-Agent"] = f"sdcli/{_version()}"
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> WebUIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        read_timeout: float | Literal["quick"] | None = "quick",
        send_body: bool = False,
        sent: Callable[[], None] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON body, or raise our own error; `sent()`
        is called (in this thread) once the request is on its way and its answer not yet read."""
        import requests

        url = self.base_url + path
        kwargs: dict[str, Any] = {"params": params}
        if json_body is not None or send_body:
            # Serialised here so `null` is never sent by accident for a defaulted field.
            kwargs["data"] = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            kwargs["headers"] = {"Content-Type": "application/json"}
        from sdcli.deadline import deadline, sent_hook

        if read_timeout == "quick":
            read_timeout = min(self.quick_timeout, self.timeout or self.quick_timeout)
        started = time.monotonic()
        # The read timeout bounds each wait for bytes; the deadline, the whole answer.
        with deadline(read_timeout) as limit, sent_hook(sent):
            try:
                response = self.session.request(
                    method, url, timeout=(self.connect_timeout, read_timeout), **kwargs
                )
            except requests.exceptions.RequestException as exc:
                log.debug(
                    "%s %s -> %s after %.2f s",
                    method,
                    path,
                    type(exc).__name__,
                    time.monotonic() - started,
                )
                if limit is not None and limit.cut:
                    raise self._timeout(method, path, read_timeout) from exc
                raise self._transport_error(exc, method, path, read_timeout) from exc
        if limit is not None and limit.cut:  # cut at the deadline: the body may be short
            raise self._timeout(method, path, read_timeout)
        log.debug(
            "%s %s -> %d, %d bytes, %.2f s",
            method,
            path,
            response.status_code,
            len(response.content),
            time.monotonic() - started,
        )
        return decode_answer(
            response,
            base_url=self.base_url,
            method=method,
            path=path,
            sent_auth=self.sent_auth,
            api_path=path.startswith(API),
        )

    def _transport_error(
        self,
        exc: requests.exceptions.RequestException,
        method: str,
        path: str,
        read_timeout: float | None,
    ) -> SdcliError:
        """The one place a failed exchange becomes our own error (order matters: subclasses)."""
        import requests

        errors = requests.exceptions
        if isinstance(exc, errors.SSLError):
            return ConnectionFailed(
                f"cannot reach {self.base_url}: TLS failed: {exception_reason(exc)}",
                hint="a self-signed certificate needs REQUESTS_CA_BUNDLE=/path/to/ca.pem",
            )
        if isinstance(exc, errors.ChunkedEncodingError):
            return ConnectionFailed(
                f"the connection to {self.base_url} broke while reading the answer to {path}",
                hint="did the web UI crash or restart?",
            )
        if isinstance(exc, errors.ConnectTimeout):
            return ConnectionFailed(
                f"cannot reach {self.base_url}: no answer to connect within "
                f"{self.connect_timeout:g} s",
                hint="is the host up and the port right?",
            )
        if isinstance(exc, errors.ReadTimeout):
            return self._timeout(method, path, read_timeout)
        if isinstance(exc, errors.ConnectionError):
            error = connection_error(self.base_url, method, path, exc, self.unknown_host)
            if error.hint is None:
                error.hint = self._other_port_hint()
            return error
        if isinstance(exc, (errors.InvalidURL, errors.InvalidSchema)):
            return UsageError(
                f"invalid server URL {self.base_url}: {exception_reason(exc)}",
                hint="check --url or SDCLI_URL",
            )
        return ApiError(f"request to {self.base_url}{path} failed: {exception_reason(exc)}")

    def _timeout(self, method: str, path: str, seconds: float | None) -> ServerTimeout:
        return ServerTimeout(
            f"{self.base_url} did not answer {method} {path} within {seconds or 0:g} s",
            hint="raise --timeout, or --timeout none to wait as long as the job takes",
        )

    def _other_port_hint(self) -> str:
        """A refused default port: does the API answer where `--nowebui` puts it (7861)?"""
        import requests

        parts = urlsplit(self.base_url)
        other = ALTERNATE_PORTS.get(parts.port or (443 if parts.scheme == "https" else 80))
        fallback = "is the web UI running with --api?"
        if other is None or parts.hostname is None:
            return fallback
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        candidate = f"{parts.scheme}://{host}:{other}{parts.path}"
        try:
            self.session.get(candidate + f"{API}/progress", timeout=(1.0, 2.0))
        except requests.exceptions.RequestException:
            return fallback
        return f"a web UI answers at {candidate} (started with --nowebui?): use --url {candidate}"

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json_body=body, send_body=True, **kwargs)

    def get_optional(self, path: str, **kwargs: Any) -> Any | None:
        """GET that returns None on a 404, for endpoints that only some versions have."""
        try:
            return self.get(path, **kwargs)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def probe(self, key: str) -> Any:
        """GET the endpoint PROBES[key] once per client: its body, or None when it is absent
        (404) or failed some other way (a probe must never be what stops a command; only an
        unreachable server does)."""
        answer = self._probe(key)
        return None if answer is _ABSENT or answer is _BROKEN else answer

    def exists(self, key: str) -> bool | None:
        """Whether the endpoint PROBES[key] exists; None when asking it failed."""
        answer = self._probe(key)
        return None if answer is _BROKEN else answer is not _ABSENT

    def _probe(self, key: str) -> Any:
        if key not in self._probes:
            try:
                body = self.get_optional(PROBES[key], read_timeout=PROBE_READ_TIMEOUT)
            except (ApiError, AuthError, ServerTimeout):
                body = _BROKEN
            self._probes[key] = _ABSENT if body is None else body
        return self._probes[key]

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self, mode: str, payload: Mapping[str, Any], *, sent: Callable[[], None] | None = None
    ) -> GenerationResult:
        """One generation request of a job's mode (txt2img, img2img); waits for the images.
        `sent()`: called once the request is on its way (the wait for the answer begins)."""
        path = GENERATE_PATHS.get(mode)
        if path is None:
            raise UsageError(f"{mode} is not supported by this client yet")
        body = self.post(path, dict(payload), read_timeout=self.timeout, sent=sent)
        return parse_generation(body)

    def txt2img(self, payload: Mapping[str, Any]) -> GenerationResult:
        return self.generate("txt2img", payload)

    def img2img(self, payload: Mapping[str, Any]) -> GenerationResult:
        return self.generate("img2img", payload)

    def progress(self, *, skip_current_image: bool = True) -> Progress:
        body = self.get(
            f"{API}/progress",
            params={"skip_current_image": "true" if skip_current_image else "false"},
            read_timeout=POLL_READ_TIMEOUT,
        )
        return parse_progress(body)

    def task_progress(
        self, task_id: str, *, live_preview: bool = False, id_live_preview: int = -1
    ) -> TaskProgress | None:
        """Our own task's state; None where /internal/progress does not exist (--nowebui, forks).

        With `live_preview`, a preview newer than `id_live_preview` comes along (once per new id).
        """
        try:
            body = self.post(
                "/internal/progress",
                {
                    "id_task": task_id,
                    "id_live_preview": id_live_preview,
                    "live_preview": live_preview,
                },
                read_timeout=POLL_READ_TIMEOUT,
            )
        except ApiError as exc:
            if exc.status in (404, 405):
                return None
            raise
        return parse_task_progress(body)

    def interrupt(self, *, read_timeout: float = 5.0) -> None:
        self.post(f"{API}/interrupt", read_timeout=read_timeout)

    def skip(self) -> None:
        self.post(f"{API}/skip")

    # -- models, options, lists ---------------------------------------------------------------

    def get_options(self) -> dict[str, Any]:
        body = self.get(OPTIONS_PATH)
        return body if isinstance(body, dict) else {}

    def set_options(self, options: Mapping[str, Any]) -> None:
        """POST /options; blocks while the server loads a model, so it uses the long timeout."""
        self.post(OPTIONS_PATH, dict(options), read_timeout=self.timeout)

    def checkpoint(self) -> dict[str, Any] | None:
        """SD.Next's GET /sdapi/v1/checkpoint: the loaded model (`type` null when none is);
        None where the endpoint does not exist."""
        body = self.get_optional(f"{API}/checkpoint")
        return body if isinstance(body, dict) else None

    def sd_models(self) -> list[SdModel]:
        body = self.get(f"{API}/sd-models")
        return [parse_model(item) for item in list_of_dicts(body, "sd-models")]

    def refresh_checkpoints(self) -> None:
        self.post(f"{API}/refresh-checkpoints", read_timeout=self.timeout)

    def samplers(self) -> list[Sampler]:
        return parse_samplers(self.get(f"{API}/samplers"))

    def schedulers(self) -> list[Scheduler] | None:
        """None on servers before 1.9.1, which have no /schedulers (a 404 is not an error here)."""
        body = self.get_optional(PROBES["schedulers"])
        return None if body is None else parse_schedulers(body)

    def upscalers(self) -> list[str]:
        body = self.get(f"{API}/upscalers")
        names = [str(item.get("name")) for item in list_of_dicts(body, "upscalers")]
        latent = self.get_optional(f"{API}/latent-upscale-modes") or []
        return names + [str(item.get("name")) for item in list_of_dicts(latent, "latent modes")]

    def png_info(self, png: bytes) -> PngInfo:
        body = self.post(f"{API}/png-info", {"image": encode_image(png)})
        return parse_png_info(body)

    # -- the extras tab, interrogation, the server's other lists -------------------------------

    def extras_single(self, body: Mapping[str, Any]) -> ExtrasResult:
        answer = self.post(f"{API}/extra-single-image", dict(body), read_timeout=self.timeout)
        return parse_extras(answer, batch=False)

    def extras_batch(self, body: Mapping[str, Any]) -> ExtrasResult:
        answer = self.post(f"{API}/extra-batch-images", dict(body), read_timeout=self.timeout)
        return parse_extras(answer, batch=True)

    def interrogate(self, image: bytes, model: str) -> str:
        """The caption as the server gives it (checking it is the caller's business)."""
        body = self.post(
            f"{API}/interrogate",
            {"image": encode_image(image), "model": model},
            read_timeout=self.timeout,
        )
        if not isinstance(body, dict) or not isinstance(body.get("caption"), str):
            raise ApiError("the server's interrogate answer has no `caption` text")
        return str(body["caption"])

    def loras(self) -> list[Lora] | None:
        """None where the Lora extension's route does not exist."""
        body = self.get_optional(LORAS_PATH)
        return None if body is None else parse_loras(body)

    def embeddings(self) -> list[Embedding]:
        return parse_embeddings(self.get(f"{API}/embeddings"))

    def prompt_styles(self) -> list[PromptStyle]:
        return parse_styles(self.get(f"{API}/prompt-styles"))

    def sd_vaes(self) -> list[Vae] | None:
        """None on Forge, which has no /sd-vae (its VAEs are /sd-modules)."""
        body = self.get_optional(VAE_PATH)
        return None if body is None else parse_vaes(body)

    def upscaler_list(self) -> list[Upscaler]:
        """The extras upscalers with their native scale (`upscalers()` adds the latent modes)."""
        return parse_upscalers(self.get(f"{API}/upscalers"))

    def latent_upscale_modes(self) -> list[str]:
        """Hires fix's latent modes; empty where the endpoint does not exist (SD.Next)."""
        body = self.get_optional(f"{API}/latent-upscale-modes") or []
        return [str(item.get("name")) for item in list_of_dicts(body, "latent modes")]

    def face_restorers(self) -> list[str]:
        body = self.get(f"{API}/face-restorers")
        return [str(item.get("name")) for item in list_of_dicts(body, "face-restorers")]

    def refresh(self, what: RefreshKind) -> None:
        """Re-scan a model folder on the server; the checkpoint scan takes the queue lock."""
        self.post(f"{API}/{REFRESH_PATHS[what]}", read_timeout=self.timeout)

    def ping(self) -> None:
        """A cheap call that proves the API answers (and that our credentials work)."""
        self.get(
            f"{API}/progress", params={"skip_current_image": "true"}, read_timeout=POLL_READ_TIMEOUT
        )


# -- helpers (pure) --------------------------------------------------------------------------


def api_root(path: str) -> str | None:
    """The web UI's root of a URL path that points into its API ("/ui/sdapi/v1" -> "/ui"), else
    None: a server URL must be the root, since every call adds the API's path to it."""
    root, api, _ = (path.rstrip("/") + "/").partition("/sdapi/")
    return root if api else None


def _version() -> str:
    from sdcli import __version__

    return __version__
