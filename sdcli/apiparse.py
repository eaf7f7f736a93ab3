"""The web UI's answers turned into our dataclasses or errors, once, at the client's edge (pure).

Lenient where the forks differ (a missing key is a default), strict where a mistake would be
saved to disk (an image must be valid base64). Error bodies come in the shapes of FastAPI, the web
UI, Forge and SD.Next, and become one line each.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sdcli.apitypes import (
    GeneratedImage,
    GenerationResult,
    PngInfo,
    Progress,
    Sampler,
    Scheduler,
    SdModel,
    TaskProgress,
)
from sdcli.errors import ApiError, AuthError, ConnectionFailed

if TYPE_CHECKING:
    import requests

    from sdcli.listtypes import Embedding, ExtrasResult, Lora, PromptStyle, Upscaler, Vae

# The client's logger: a server's message in full goes to --debug, never more than that.
log = logging.getLogger("sdcli.http")
SERVER_TEXT_LIMIT = 300  # characters of a server's message in an error line (--debug: all)


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
            encoded = _as_str(images_b64[pos])
            data = decode_image(encoded, what=f"image {pos + 1}")
        except ApiError as exc:
            problems.append(exc.message)
            continue
        images.append(GeneratedImage(data=data, index=i, seed=seed, infotext=text, encoded=encoded))
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
        current_image=parse_preview(body.get("current_image")),
    )


def parse_preview(value: Any) -> bytes | None:
    """A live preview: `data:image/png;base64,…` (/internal/progress) or bare base64
    (/sdapi/v1/progress: a PNG on A1111, a JPEG on SD.Next). Unusable data is no preview."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return decode_image(value, what="the live preview")
    except ApiError:
        return None


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


def parse_task_progress(body: Any) -> TaskProgress | None:
    """/internal/progress's answer; None when it is not an object."""
    if not isinstance(body, dict):
        return None
    return TaskProgress(
        active=bool(body.get("active")),
        queued=bool(body.get("queued")),
        completed=bool(body.get("completed")),
        progress=opt_float(body.get("progress")),
        eta=opt_float(body.get("eta")),
        textinfo=body.get("textinfo") if isinstance(body.get("textinfo"), str) else None,
        live_preview=parse_preview(body.get("live_preview")),
        id_live_preview=_int_or(body.get("id_live_preview"), -1),
    )


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse_samplers(body: Any) -> list[Sampler]:
    return [
        Sampler(
            name=str(item.get("name", "")),
            aliases=tuple(str(a) for a in item.get("aliases") or ()),
            options=dict(item.get("options") or {}),
        )
        for item in list_of_dicts(body, "samplers")
    ]


def parse_schedulers(body: Any) -> list[Scheduler]:
    return [
        Scheduler(
            name=str(item.get("name", "")),
            label=str(item.get("label") or item.get("name", "")),
            aliases=tuple(str(a) for a in item.get("aliases") or ()),
        )
        for item in list_of_dicts(body, "schedulers")
    ]


def parse_png_info(body: Any) -> PngInfo:
    if not isinstance(body, dict):
        raise ApiError("png-info answered with something other than an object")
    return PngInfo(
        info=str(body.get("info") or ""),
        items=dict(body.get("items") or {}),
        parameters=dict(body.get("parameters") or {}),
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
    from sdcli.listtypes import Lora

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
    from sdcli.listtypes import Embedding

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
    from sdcli.listtypes import PromptStyle

    return [
        PromptStyle(
            name=_text(item.get("name")),
            prompt=_text(item.get("prompt")),
            negative_prompt=_text(item.get("negative_prompt")),
        )
        for item in list_of_dicts(body, "prompt-styles")
    ]


def parse_vaes(body: Any) -> list[Vae]:
    from sdcli.listtypes import Vae

    return [
        Vae(name=_text(item.get("model_name")), filename=_text(item.get("filename")))
        for item in list_of_dicts(body, "sd-vae")
    ]


def parse_upscalers(body: Any) -> list[Upscaler]:
    from sdcli.listtypes import Upscaler

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
    from sdcli.listtypes import ExtrasResult

    key = "images" if batch else "image"
    if not isinstance(body, dict) or key not in body:
        raise ApiError(f"the server's extras answer has no `{key}`")
    encoded = body[key] if batch else [body[key]]
    if not isinstance(encoded, list) or not all(isinstance(b, str) for b in encoded):
        raise ApiError(f"the server's extras answer has a `{key}` that is not base64 text")
    images = [decode_image(b, what=f"image {i + 1}") for i, b in enumerate(encoded)]
    html = body.get("html_info")
    return ExtrasResult(images=images, html_info=html if isinstance(html, str) else "")


# -- error answers ---------------------------------------------------------------------------


def decode_answer(
    response: requests.Response,
    *,
    base_url: str,
    method: str,
    path: str,
    sent_auth: bool,
    api_path: bool,
) -> Any:
    """The JSON body of a 2xx answer, or the error any other answer (or a cut one) means."""
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
            f"the connection to {base_url} closed before {method} {path} was answered",
            hint="did the web UI crash or restart, or is a proxy in the way?",
        )
    else:
        is_json = 200 <= status < 300  # empty 2xx: treat as null
    if 200 <= status < 300:
        if not is_json:
            raise ApiError(
                f"{base_url}{path} answered {status} with {_describe_non_json(response, content)}",
                status=status,
                hint="is this really the web UI API?",
            )
        return body
    raise _status_error(
        base_url,
        method,
        path,
        status,
        body if is_json else None,
        response,
        content,
        sent_auth=sent_auth,
        api_path=api_path,
    )


def _unframed(response: requests.Response) -> bool:
    headers = response.headers
    return (
        # 204 and 304 never have a body, so no length either (SD.Next's /interrupt: 204)
        response.status_code not in (204, 304)
        and "content-length" not in headers
        and "chunked" not in headers.get("transfer-encoding", "").lower()
    )


def exception_reason(exc: BaseException) -> str:
    """The innermost cause's message, which is the readable one in urllib3's chains."""
    seen: BaseException = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    text = str(seen) or type(seen).__name__
    return text.split(": ", 1)[-1] if text.startswith("<") else text


def connection_error(
    base_url: str,
    method: str,
    path: str,
    exc: Exception,
    unknown_host: tuple[str, str] | None = None,
) -> ConnectionFailed:
    """`unknown_host`: (message, hint) for a host name that does not resolve (config's: a bare
    word of `--url` that may have meant a [servers.NAME] table)."""
    text = repr(exc)
    if "NameResolution" in text or "getaddrinfo" in text or "Name or service not known" in text:
        if unknown_host is not None:
            return ConnectionFailed(unknown_host[0], hint=unknown_host[1])
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
    api_path: bool,
) -> ApiError | AuthError:
    """The error for a non-2xx answer: one line from the body, a hint for what can be done.

    `api_path`: the path is one of the API's (a 404 there means the API is off, not absent).
    """
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
        hint = "start the web UI with --api" if api_path else None
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
