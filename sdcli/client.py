"""WebUIClient: the only module that speaks HTTP. Every failure leaves it as an SdcliError."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sdcli.apiparse import (
    encode_image,
    list_of_dicts,
    opt_float,
    parse_embeddings,
    parse_extras,
    parse_generation,
    parse_loras,
    parse_model,
    parse_progress,
    parse_styles,
    parse_upscalers,
    parse_vaes,
)
from sdcli.apitypes import (
    Embedding,
    ExtrasResult,
    GenerationResult,
    Lora,
    PngInfo,
    Progress,
    PromptStyle,
    Sampler,
    Scheduler,
    SdModel,
    TaskProgress,
    Upscaler,
    Vae,
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

# HTTP traffic summaries for --debug: method, path, status, size, time. Never headers or bodies,
# so credentials cannot leak into a log.
log = logging.getLogger("sdcli.http")

API = "/sdapi/v1"
# A refused port -> where the same web UI may be listening instead (API-only mode's default).
ALTERNATE_PORTS = {7860: 7861}
GENERATE_PATHS = {"txt2img": f"{API}/txt2img", "img2img": f"{API}/img2img"}  # by job mode
SERVER_TEXT_LIMIT = 300  # characters of a server's message in an error line (--debug: all)
QUICK_READ_TIMEOUT = 30.0  # list endpoints and progress never take the queue lock
POLL_READ_TIMEOUT = 10.0
RefreshKind = Literal["checkpoints", "loras", "embeddings", "vae"]
REFRESH_PATHS: dict[str, str] = {
    "checkpoints": "refresh-checkpoints",
    "loras": "refresh-loras",
    "embeddings": "refresh-embeddings",
    "vae": "refresh-vae",
}


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.quick_timeout = quick_timeout  # calls that never wait in the queue (lists, options)
        self._session = session
        self._auth = auth
        self.sent_auth = auth is not None

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
            )
        return cls(
            settings.url,
            auth=settings.auth,
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
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
    ) -> Any:
        """Send one request and return the decoded JSON body, or raise our own error."""
        import requests

        url = self.base_url + path
        kwargs: dict[str, Any] = {"params": params}
        if json_body is not None or send_body:
            # Serialised here so `null` is never sent by accident for a defaulted field.
            kwargs["data"] = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            kwargs["headers"] = {"Content-Type": "application/json"}
        from sdcli.deadline import deadline

        if read_timeout == "quick":
            read_timeout = min(self.quick_timeout, self.timeout or self.quick_timeout)
        started = time.monotonic()
        # The read timeout bounds each wait for bytes; the deadline, the whole answer.
        with deadline(read_timeout) as limit:
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
        return self._decode(response, method, path)

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
                f"cannot reach {self.base_url}: TLS failed: {_reason(exc)}",
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
            error = _connection_error(self.base_url, method, path, exc)
            if error.hint is None:
                error.hint = self._other_port_hint()
            return error
        if isinstance(exc, (errors.InvalidURL, errors.InvalidSchema)):
            return UsageError(
                f"invalid server URL {self.base_url}: {_reason(exc)}",
                hint="check --url or SDCLI_URL",
            )
        return ApiError(f"request to {self.base_url}{path} failed: {_reason(exc)}")

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

    def _decode(self, response: requests.Response, method: str, path: str) -> Any:
        status = response.status_code
        content = response.content  # already read by requests (no streaming)
        body: Any = None
        is_json = False
        if content.strip():
            try:
                body = json.loads(content)
                is_json = True
            except ValueError:
                is_json = False
        elif _unframed(response):
            # No Content-Length, not chunked, nothing read: the connection closed before the
            # answer was complete (headers that never ended), not an empty answer.
            raise ConnectionFailed(
                f"the connection to {self.base_url} closed before {method} {path} was answered",
                hint="did the web UI crash or restart, or is a proxy in the way?",
            )
        else:
            is_json = 200 <= status < 300  # empty 2xx: treat as null
        if 200 <= status < 300:
            if not is_json:
                raise ApiError(
                    f"{self.base_url}{path} answered {status} with "
                    f"{_describe_non_json(response, content)}",
                    status=status,
                    hint="is this really the web UI API?",
                )
            return body
        raise _status_error(
            self.base_url,
            method,
            path,
            status,
            body if is_json else None,
            response,
            content,
            sent_auth=self.sent_auth,
        )

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

    # -- generation ---------------------------------------------------------------------------

    def generate(self, mode: str, payload: Mapping[str, Any]) -> GenerationResult:
        """One generation request of a job's mode (txt2img, img2img); waits for the images."""
        path = GENERATE_PATHS.get(mode)
        if path is None:
            raise UsageError(f"{mode} is not supported by this client yet")
        body = self.post(path, dict(payload), read_timeout=self.timeout)
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

    def task_progress(self, task_id: str) -> TaskProgress | None:
        """Our own task's state; None where /internal/progress does not exist (--nowebui, forks)."""
        try:
            body = self.post(
                "/internal/progress",
                {"id_task": task_id, "id_live_preview": -1, "live_preview": False},
                read_timeout=POLL_READ_TIMEOUT,
            )
        except ApiError as exc:
            if exc.status in (404, 405):
                return None
            raise
        if not isinstance(body, dict):
            return None
        return TaskProgress(
            active=bool(body.get("active")),
            queued=bool(body.get("queued")),
            completed=bool(body.get("completed")),
            progress=opt_float(body.get("progress")),
            eta=opt_float(body.get("eta")),
            textinfo=body.get("textinfo") if isinstance(body.get("textinfo"), str) else None,
        )

    def interrupt(self, *, read_timeout: float = 5.0) -> None:
        self.post(f"{API}/interrupt", read_timeout=read_timeout)

    def skip(self) -> None:
        self.post(f"{API}/skip")

    # -- models, options, lists ---------------------------------------------------------------

    def get_options(self) -> dict[str, Any]:
        body = self.get(f"{API}/options")
        return body if isinstance(body, dict) else {}

    def set_options(self, options: Mapping[str, Any]) -> None:
        """POST /options; blocks while the server loads a model, so it uses the long timeout."""
        self.post(f"{API}/options", dict(options), read_timeout=self.timeout)

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
        body = self.get(f"{API}/samplers")
        return [
            Sampler(
                name=str(item.get("name", "")),
                aliases=tuple(str(a) for a in item.get("aliases") or ()),
                options=dict(item.get("options") or {}),
            )
            for item in list_of_dicts(body, "samplers")
        ]

    def schedulers(self) -> list[Scheduler] | None:
        """None on servers before 1.9.1, which have no /schedulers (a 404 is not an error here)."""
        body = self.get_optional(f"{API}/schedulers")
        if body is None:
            return None
        return [
            Scheduler(
                name=str(item.get("name", "")),
                label=str(item.get("label") or item.get("name", "")),
                aliases=tuple(str(a) for a in item.get("aliases") or ()),
            )
            for item in list_of_dicts(body, "schedulers")
        ]

    def upscalers(self) -> list[str]:
        body = self.get(f"{API}/upscalers")
        names = [str(item.get("name")) for item in list_of_dicts(body, "upscalers")]
        latent = self.get_optional(f"{API}/latent-upscale-modes") or []
        return names + [str(item.get("name")) for item in list_of_dicts(latent, "latent modes")]

    def png_info(self, png: bytes) -> PngInfo:
        body = self.post(f"{API}/png-info", {"image": encode_image(png)})
        if not isinstance(body, dict):
            raise ApiError("png-info answered with something other than an object")
        return PngInfo(
            info=str(body.get("info") or ""),
            items=dict(body.get("items") or {}),
            parameters=dict(body.get("parameters") or {}),
        )

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
        body = self.get_optional(f"{API}/loras")
        return None if body is None else parse_loras(body)

    def embeddings(self) -> list[Embedding]:
        return parse_embeddings(self.get(f"{API}/embeddings"))

    def prompt_styles(self) -> list[PromptStyle]:
        return parse_styles(self.get(f"{API}/prompt-styles"))

    def sd_vaes(self) -> list[Vae] | None:
        """None on Forge, which has no /sd-vae (its VAEs are /sd-modules)."""
        body = self.get_optional(f"{API}/sd-vae")
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


# -- parsing helpers (pure) ------------------------------------------------------------------


def _version() -> str:
    from sdcli import __version__

    return __version__


def _reason(exc: BaseException) -> str:
    """The innermost cause's message, which is the readable one in urllib3's chains."""
    seen: BaseException = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    text = str(seen) or type(seen).__name__
    return text.split(": ", 1)[-1] if text.startswith("<") else text


def _connection_error(base_url: str, method: str, path: str, exc: Exception) -> ConnectionFailed:
    text = repr(exc)
    if "NameResolution" in text or "getaddrinfo" in text or "Name or service not known" in text:
        host = base_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        return ConnectionFailed(
            f"cannot reach {base_url}: the host name {host!r} does not resolve",
            hint="check --url or SDCLI_URL",
        )
    if "RemoteDisconnected" in text or "ProtocolError" in text or "ConnectionReset" in text:
        return ConnectionFailed(
            f"the connection to {base_url} closed before {method} {path} was answered",
            hint="did the web UI crash or restart?",
        )
    return ConnectionFailed(f"cannot reach {base_url}")


def _unframed(response: requests.Response) -> bool:
    headers = response.headers
    return (
        # 204 and 304 never have a body, so no length either (SD.Next's /interrupt: 204)
        response.status_code not in (204, 304)
        and "content-length" not in headers
        and "chunked" not in headers.get("transfer-encoding", "").lower()
    )


def clip(text: str, limit: int = SERVER_TEXT_LIMIT) -> str:
    """A server's message cut to fit an error line (a 200 KB one is not a line)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_text_error(response: requests.Response, content: bytes) -> str | None:
    """The line that says what failed in a plain-text error body: the exception at the end of a
    Python traceback, or the text itself (Starlette's "Internal Server Error"); None for HTML."""
    if "html" in response.headers.get("content-type", "") or not content.strip():
        return None
    text = content.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in text:
        return lines[-1]
    if "text/plain" in response.headers.get("content-type", "") and len(lines) == 1:
        return lines[0]
    return None


def _redirected_to(response: requests.Response) -> str | None:
    """Where a redirect led, without credentials or query, if it left the --url's server."""
    if not response.history:
        return None
    final, first = urlsplit(response.url), urlsplit(response.history[0].url)
    if (final.scheme, final.hostname, final.port) == (first.scheme, first.hostname, first.port):
        return None
    host = f"[{final.hostname}]" if final.hostname and ":" in final.hostname else final.hostname
    port = f":{final.port}" if final.port else ""
    return f"{final.scheme}://{host}{port}{final.path}"


def _describe_non_json(response: requests.Response, content: bytes) -> str:
    ctype = response.headers.get("content-type", "")
    head = content.lstrip()[:15].lower()
    if "html" in ctype or head.startswith((b"<!doctype", b"<html", b"<")):
        return "an HTML page instead of JSON"
    if not content.strip():
        return "an empty body instead of JSON"
    return "a body that is not valid JSON (truncated?)"


def _status_error(
    base_url: str,
    method: str,
    path: str,
    status: int,
    body: Any,
    response: requests.Response,
    content: bytes,
    *,
    sent_auth: bool,
) -> ApiError | AuthError:
    reason = response.reason or ""
    full = _error_detail(body) if body is not None else _plain_text_error(response, content)
    detail = clip(full) if full else full
    if full and detail != full:
        log.debug("%s %s: the server's message in full: %s", method, path, full)
    if isinstance(body, dict) and "code" in body and "\n" in str(body.get("errors") or "").strip():
        # SD.Next's `errors` can run to dozens of lines (validation errors, a traceback)
        log.debug("%s %s: the server's error in full:\n%s", method, path, body["errors"])
    hint: str | None
    if status in (401, 403):
        elsewhere = _redirected_to(response)
        msg = f"{elsewhere or base_url} refused access ({status}"
        msg += f": {detail})" if detail else ")"
        if elsewhere:
            hint = (
                f"{base_url}{path} redirected there, and sdcli never sends its credentials to "
                "another server: give that server's address with --url"
            )
        elif sent_auth:
            hint = "check the user name and password given with --auth or SDCLI_AUTH"
        else:
            hint = "the server needs --auth USER:PASS (or SDCLI_AUTH), as set by its --api-auth"
        return AuthError(msg, hint=hint)
    if body is None and full:
        label = "the server failed" if status >= 500 else "the server refused the request"
        return ApiError(f"{label} ({status}): {detail}", status=status, detail=full)
    if body is None:
        what = _describe_non_json(response, content)
        hint = (
            "is a proxy in front of the web UI, and is the web UI running?"
            if status >= 500
            else None
        )
        return ApiError(
            f"{base_url}{path} answered {status} {reason} with {what}".replace("  ", " "),
            status=status,
            hint=hint,
        )
    if status == 404 and body == {"detail": "Not Found"}:
        hint = "start the web UI with --api" if path.startswith(API) else None
        return ApiError(f"{base_url} has no {path} (404)", status=status, detail=detail, hint=hint)
    if status == 422 and isinstance(body, dict) and isinstance(body.get("detail"), list):
        return ApiError(
            f"the server rejected the request (422): {detail}", status=status, detail=full
        )
    label = "the server failed" if status >= 500 else "the server refused the request"
    return ApiError(f"{label} ({status}): {detail or reason}", status=status, detail=full)


def _error_detail(body: Any) -> str:
    """One line from any of the error shapes: FastAPI, the web UI's, Forge's or SD.Next's."""
    if not isinstance(body, dict):
        return ""
    detail = body.get("detail")
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(p) for p in item.get("loc", []) if p != "body"]
                parts.append(f"{'.'.join(loc) or 'body'}: {item.get('msg', '')}")
        return "; ".join(parts)
    error = str(body.get("error") or "")
    text = str(detail or body.get("errors") or body.get("message") or "").strip()
    if "code" in body and "\n" in text:
        # SD.Next's `errors` (its bodies have `code`): the first line says what failed, the
        # rest (validation errors, a traceback) goes to --debug
        text = text.splitlines()[0].rstrip(":")
    if error and error != "HTTPException" and text:
        return f"{error}: {text}"
    return text or error
