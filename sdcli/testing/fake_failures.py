"""Failure injection: what a sick server, a proxy or a flaky network does to one request."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, get_args

from sdcli.testing.fake_engine import Engine, HTTPFailure
from sdcli.testing.fake_http import Call, Reply, json_reply
from sdcli.testing.fake_routes import Api

FailureMode = Literal[
    "status", "html", "malformed", "close", "hang", "hold", "bad_image", "not_png", "empty_images"
]
MODES: frozenset[str] = frozenset(get_args(FailureMode))
_NGINX = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_NOT_BASE64 = "iVBORw0KGgo%%%broken%%%"  # 17 base64 letters: no decoder accepts that
_JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(48)


@dataclass
class _Failure:
    path: str
    status: int
    body: Any
    times: int | None  # None: until cleared
    mode: str


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Failures:
    """Failures armed per path, consumed in arming order; hung requests wait on the engine."""

    def __init__(self, engine: Engine, api: Api) -> None:
        self._engine, self._api = engine, api
        self._lock = threading.Lock()
        self._armed: list[_Failure] = []
        self._hang_generation = 0

    def add(self, path: str, status: int, body: Any, times: int | None, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown failure mode {mode!r}; choose from {sorted(MODES)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for ever)")
        with self._lock:
            self._armed.append(_Failure(path, status, body, times, mode))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def release_hangs(self) -> None:
        with self._engine.cv:
            self._hang_generation += 1
            self._engine.cv.notify_all()

    def _take(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._armed:
                if failure.path == path:
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times == 0:
                            self._armed.remove(failure)
                    return failure
        return None

    def _hang(self) -> None:
        engine = self._engine
        with engine.cv:
            generation = self._hang_generation
            while not engine.stopping and self._hang_generation == generation:
                engine.cv.wait()

    def respond(self, call: Call, handle: Callable[[Call], Reply]) -> Reply | None:
        """The reply to `call` with any armed failure applied; None: drop the connection."""
        failure = self._take(call.path)
        if failure is None:
            return handle(call)
        if failure.mode == "status":
            if failure.body is None:
                return self._default_body(failure.status)
            body = failure.body
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            return Reply(failure.status, data)
        if failure.mode == "html":
            status = 502 if failure.status == 500 else failure.status
            page = _NGINX.format(status=status, phrase=_phrase(status)).encode()
            return Reply(status, page, "text/html", proxy="nginx/1.24.0")
        if failure.mode in ("close", "hang"):
            if failure.mode == "hang":
                self._hang()
            return None
        if failure.mode == "hold":  # a slow server: the request waits, then is answered
            self._hang()
            return handle(call)
        reply = handle(call)
        return _spoil(reply, failure.mode) if reply.status == 200 else reply

    def _default_body(self, status: int) -> Reply:
        if status == 500:
            return self._api.crash("RuntimeError", "injected failure")
        return self._api.http_error(HTTPFailure(status, _phrase(status)))


def _spoil(reply: Reply, mode: str) -> Reply:
    """Turn a good answer into the broken one a failure mode asks for."""
    if mode == "malformed":
        return Reply(200, reply.body[: max(1, len(reply.body) // 2)], gzip_ok=False)
    payload = json.loads(reply.body)
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
        return reply
    images = payload["images"]
    if mode == "empty_images":
        payload["images"] = []
    elif mode == "bad_image" and images:
        images[0] = _NOT_BASE64
    elif mode == "not_png" and images:
        images[0] = base64.b64encode(_JPEG_BYTES).decode("ascii")
    return json_reply(200, payload)
