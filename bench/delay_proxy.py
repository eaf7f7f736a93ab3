"""A delaying HTTP proxy for the benchmarks: a server that is DELAY seconds further away.

Every request waits DELAY before it is forwarded to the target (the fake web UI), so each round
trip a client makes costs DELAY more, as over a network; the answer is passed back unchanged
(status, headers, gzip-encoded body). It listens on 127.0.0.1 only, forwards only to a
127.0.0.1 target, and is bounded: at most MAX_CONNECTIONS clients at once, bodies up to
MAX_BODY bytes, TIMEOUT seconds for any read. In the benchmark process (`DelayProxy`) or alone:

    python bench/delay_proxy.py http://127.0.0.1:7860 --delay 0.05
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

MAX_CONNECTIONS = 32
MAX_BODY = 256 * 1024 * 1024  # a batch of big PNGs as base64 stays far below
TIMEOUT = 120.0
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "proxy-authorization", "proxy-authenticate", "content-length"}
)  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    target: tuple[str, int]
    delay: float
    slots: threading.BoundedSemaphore
    requests: int

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse (close) a connection beyond MAX_CONNECTIONS instead of queueing threads."""
        return self.slots.acquire(blocking=False)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' sessions expect
    server: _Server
    timeout = TIMEOUT
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the benchmark prints its own report

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        time.sleep(self.server.delay)  # the added round trip
        self.server.requests += 1
        if self._upstream is None:
            host, port = self.server.target
            self._upstream = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            self._upstream.request(self.command, self.path, body=body, headers=headers)
            answer = self._upstream.getresponse()
            data = answer.read(MAX_BODY + 1)
        except (OSError, http.client.HTTPException):
            self._upstream.close()
            self._upstream = None
            self.send_error(502)
            return
        if len(data) > MAX_BODY:
            self.send_error(502, "answer too large")
            return
        self.send_response_only(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()


class DelayProxy:
    """`with DelayProxy(fake.url, 0.05) as proxy:` clients use `proxy.url` instead."""

    def __init__(self, target: str, delay: float) -> None:
        parts = urlsplit(target)
        if parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError("the delay proxy forwards only to http://127.0.0.1:PORT")
        if not 0 <= delay <= 10:
            raise ValueError("delay: 0 to 10 seconds")
        socketserver.TCPServer.allow_reuse_address = True
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.target = ("127.0.0.1", parts.port)
        self._server.delay = delay
        self._server.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._server.requests = 0
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> int:
        """Requests forwarded so far."""
        return self._server.requests

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A delaying HTTP proxy on 127.0.0.1.")
    p.add_argument("target", help="http://127.0.0.1:PORT to forward to")
    p.add_argument("--delay", type=float, default=0.05, help="seconds added to every request")
    args = p.parse_args(argv)
    with DelayProxy(args.target, args.delay) as proxy:
        print(proxy.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
