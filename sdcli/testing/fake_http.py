"""HTTP plumbing for the fake: a threading HTTP/1.1 server whose connections stop() can cut."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"
NO_BODY: Any = object()  # the request had no body, or not a JSON one


@dataclass
class Call:
    """One parsed HTTP request, as the endpoints see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    raw: bytes
    body: Any = NO_BODY  # decoded JSON, NO_BODY when empty or not decodable


@dataclass
class Reply:
    """A finished answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    gzip_ok: bool = True  # False for deliberately broken bodies
    proxy: str | None = None  # a proxy answered: its Server header, and no x-process-time


def json_reply(status: int, payload: Any) -> Reply:
    """JSON the way Starlette's JSONResponse writes it: compact, UTF-8, no ASCII escaping."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Reply(status, text.encode("utf-8"))


def _gzip(body: bytes) -> bytes:
    """GZipMiddleware's job, Huffman-only: base64 images shrink as much, three times faster."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31, 8, zlib.Z_HUFFMAN_ONLY)
    return packer.compress(body) + packer.flush()


App = Callable[[Call], "Reply | None"]  # None: drop the connection unanswered


class Server(ThreadingHTTPServer):
    """Serves `app` on 127.0.0.1; remembers live connections so close_all() can end them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        port: int,
        app: App,
        record: Callable[[Call], None],
        *,
        gzip_responses: Callable[[], bool],
        process_time_header: bool,
    ) -> None:
        self.app, self.record = app, record
        self.gzip_responses = gzip_responses
        self.process_time_header = process_time_header
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-answer is routine (timeouts, Ctrl-C), not worth a traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections[conn] = threading.current_thread()
            else:
                self._connections.pop(conn, None)

    def close_all(self, timeout: float = 5.0) -> None:
        """Shut every open connection down and wait for its handler thread to end."""
        with self._lock:
            live = list(self._connections.items())
        for conn, _thread in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _conn, thread in live:
            thread.join(timeout)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive and exact Content-Length; header names lower-case like uvicorn."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as uvicorn (asyncio) sets it: headers and body go out in two writes, and with
    # Nagle on, the second waits for the client's delayed ACK — 40 ms on every keep-alive answer.
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `fake.requests`, not a log."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        start = time.perf_counter()
        url = urlsplit(self.path)
        raw = self._read_body()
        call = Call(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            raw=raw,
        )
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            call.body = json.loads(raw) if raw else NO_BODY
        self.server.record(call)
        call.body = NO_BODY  # endpoints decode it themselves, with FastAPI's errors
        reply = self.server.app(call)
        if reply is None:
            self.close_connection = True
            return
        self._send(reply, start)

    def _send(self, reply: Reply, start: float) -> None:
        body, headers = reply.body, dict(reply.headers)
        accepts = self.headers.get("Accept-Encoding", "")
        if (
            reply.gzip_ok
            and self.server.gzip_responses()
            and "gzip" in accepts
            and len(body) >= 1000
        ):
            body = _gzip(body)
            headers["content-encoding"] = "gzip"
            headers["vary"] = "Accept-Encoding"
        self.send_response_only(reply.status)
        self.send_header("date", self.date_time_string())
        self.send_header("server", reply.proxy or "uvicorn")
        if reply.status != 204:  # a 204 carries neither body nor content headers
            self.send_header("content-length", str(len(body)))
            self.send_header("content-type", reply.content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.server.process_time_header and reply.proxy is None:
            self.send_header("x-process-time", f"{time.perf_counter() - start:.4f}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch
