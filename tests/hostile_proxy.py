"""A hostile server for the tests: a proxy in front of the fake web UI that breaks one path.

Every request is passed to the fake unchanged, except those for the paths a test broke; those
get one hostile answer at the byte level, which the fake's own failure hooks (status codes,
bodies, dropped connections: `FakeWebUI.fail`) cannot give: an answer trickled a byte at a
time, header lines that never end, a redirect, a connection reset, or any raw bytes.

It binds 127.0.0.1 only, on an ephemeral port, over real sockets; every hostile answer is
bounded (a trickle gives up after `limit` seconds) and `stop()` ends every connection.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit

HOST = "127.0.0.1"
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Exchange:
    """One request as the proxy read it, and the way to answer it."""

    method: str
    path: str  # without the query
    head: bytes  # request line and headers, as received
    body: bytes
    client: socket.socket
    proxy: HostileProxy

    def upstream(self) -> bytes:
        """The fake's whole answer to this request (status line, headers, body)."""
        return self.proxy.forward(self.head, self.body)


# A breaker writes its hostile answer to exchange.client; True: keep the connection for more.
Breaker = Callable[[Exchange], bool]


def trickle(interval: float = 0.1, limit: float = 10.0) -> Breaker:
    """The fake's real answer, from its first byte, one byte every `interval` seconds; after
    `limit` seconds the proxy gives up and closes the connection."""

    def breaker(exchange: Exchange) -> bool:
        stopping = exchange.proxy.stopping
        data = exchange.upstream()
        waited = 0.0
        for i in range(len(data)):
            exchange.client.sendall(data[i : i + 1])
            if stopping.wait(interval):  # the server's pace, cut short by stop()
                return False
            waited += interval
            if waited >= limit:
                return False
        return True

    return breaker


def endless_headers(lines: int = 50) -> Breaker:
    """A 200 status line, `lines` header lines, then the connection closes: no blank line, no
    body. Fewer than 100 lines: Python's http.client takes that as a complete, empty answer."""

    def breaker(exchange: Exchange) -> bool:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        head += b"".join(b"x-pad-%d: %s\r\n" % (i, b"a" * 40) for i in range(lines))
        exchange.client.sendall(head)
        return False

    return breaker


def redirect(location: str, status: int = 307) -> Breaker:
    """Send the client elsewhere; `location` may be relative or absolute."""

    def breaker(exchange: Exchange) -> bool:
        exchange.client.sendall(
            b"HTTP/1.1 %d Temporary Redirect\r\nlocation: %s\r\ncontent-length: 0\r\n\r\n"
            % (status, location.encode())
        )
        return True

    return breaker


def reset() -> Breaker:
    """Drop the connection with a TCP reset (RST), as a crashed host or a firewall does."""

    def breaker(exchange: Exchange) -> bool:
        exchange.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    return breaker


def raw(data: bytes) -> Breaker:
    """These exact bytes as the answer, then the connection closes."""

    def breaker(exchange: Exchange) -> bool:
        exchange.client.sendall(data)
        return False

    return breaker


@dataclass
class _Rule:
    path: str
    breaker: Breaker
    times: int | None


class HostileProxy:
    """`HostileProxy(fake.url).start()`; `break_path(path, trickle())`; `stop()` (or `with`)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_addr = (parts.hostname or HOST, parts.port or 80)
        self.stopping = threading.Event()
        self.hits: list[str] = []  # paths that got a hostile answer, in order
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the proxy is not running"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def break_path(self, path: str, breaker: Breaker, *, times: int | None = 1) -> None:
        """The next `times` requests for `path` (None: all of them) get `breaker`'s answer."""
        with self._lock:
            self._rules.append(_Rule(path, breaker, times))

    def start(self) -> HostileProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((HOST, 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), name="hostile-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> HostileProxy:
        return self if self._server is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- plumbing ------------------------------------------------------------------------------

    def _take(self, path: str) -> Breaker | None:
        with self._lock:
            for rule in self._rules:
                if rule.path == path:
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    self.hits.append(path)
                    return rule.breaker
        return None

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._clients.add(client)
        try:
            reader: BinaryIO = client.makefile("rb")
            while not self.stopping.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                head, body = request
                method, target = head.split(b" ", 2)[:2]
                path = urlsplit(target.decode("latin-1")).path
                exchange = Exchange(method.decode(), path, head, body, client, self)
                breaker = self._take(path)
                if breaker is None:
                    client.sendall(exchange.upstream())
                elif not breaker(exchange):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._clients.discard(client)
            with contextlib.suppress(OSError):
                client.close()

    def forward(self, head: bytes, body: bytes) -> bytes:
        """Send one request to the fake on a connection of its own and read the whole answer."""
        lines = head.split(b"\r\n")
        kept = [line for line in lines[1:] if line and not line.lower().startswith(b"connection:")]
        request = b"\r\n".join([lines[0], *kept, b"connection: close", b"", b""]) + body
        with socket.create_connection(self.upstream_addr, timeout=30) as upstream:
            upstream.sendall(request)
            chunks = []
            while chunk := upstream.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def _read_request(reader: BinaryIO) -> tuple[bytes, bytes] | None:
    """Request line and headers (up to the blank line), then a Content-Length body; None at EOF."""
    head = b""
    while True:
        line = reader.readline(MAX_HEAD)
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n") or len(head) > MAX_HEAD:
            break
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or b"0")
    body = reader.read(length) if length else b""
    return head.rstrip(b"\r\n") + b"\r\n", body
