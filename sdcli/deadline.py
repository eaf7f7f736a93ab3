"""Wall-clock deadlines for whole HTTP answers, which requests' timeouts are not.

requests (urllib3) bounds each socket read: a server that sends one byte every half second
never trips a 5 s read timeout, and holds the client for as long as it likes. Here a watchdog
thread shuts the socket of an answer down once its deadline passes, whatever the answer is
doing (status line, headers or body); the client then reports a timeout.

The socket is found through urllib3's documented extension points: a transport adapter whose
pool manager uses connection pools of our own, whose connections register their socket with
the deadline of the thread that is reading an answer from them. The same hook tells a caller
that its request is on its way (`sent_hook`): the time until the answer is the client's to use.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from sdcli.datatypes import mutable

# .deadline: the Deadline of the request this thread is making; .sent: called once it is sent
_local = threading.local()


@mutable(eq=False)
class Deadline:
    """One answer's time limit; `cut` once the watchdog cut the answer short."""

    at: float
    sock: socket.socket | None = None
    expired: bool = False  # the time is up (maybe while still connecting: not ours to judge)
    cut: bool = False


class _Watchdog:
    """One daemon thread per process, asleep until the nearest deadline."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._live: list[Deadline] = []
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._cv:
            self._live.append(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sdcli-deadline")
                self._thread.daemon = True
                self._thread.start()
            self._cv.notify()

    def remove(self, deadline: Deadline) -> None:
        with self._cv:
            self._live.remove(deadline)

    def arm(self, deadline: Deadline, sock: socket.socket) -> None:
        """The socket the answer arrives on; cut at once if the deadline already passed."""
        with self._cv:
            deadline.sock = sock
            if deadline.expired:
                _cut(deadline)

    def _run(self) -> None:
        with self._cv:
            while True:
                now = time.monotonic()
                for deadline in self._live:
                    if not deadline.expired and deadline.at <= now:
                        deadline.expired = True
                        if deadline.sock is not None:
                            _cut(deadline)
                pending = [d.at for d in self._live if not d.expired]
                self._cv.wait(min(pending) - now if pending else None)


def _cut(deadline: Deadline) -> None:
    """Wake the thread blocked reading the answer: it sees the end of the stream at once."""
    deadline.cut = True
    if deadline.sock is not None:
        with contextlib.suppress(OSError):
            deadline.sock.shutdown(socket.SHUT_RDWR)


_watchdog = _Watchdog()


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[Deadline | None]:
    """Bound every answer read by this thread inside the block to `seconds` of wall time."""
    if seconds is None:
        yield None
        return
    limit = Deadline(time.monotonic() + seconds)
    previous = getattr(_local, "deadline", None)
    _local.deadline = limit
    _watchdog.add(limit)
    try:
        yield limit
    finally:
        _local.deadline = previous
        _watchdog.remove(limit)


@contextlib.contextmanager
def sent_hook(callback: Callable[[], None] | None) -> Iterator[None]:
    """Call `callback` (in this thread) each time a request made inside the block has been
    sent whole and its answer is about to be read."""
    previous = getattr(_local, "sent", None)
    _local.sent = callback
    try:
        yield
    finally:
        _local.sent = previous


def _register(conn: HTTPConnection) -> None:
    callback: Callable[[], None] | None = getattr(_local, "sent", None)
    if callback is not None:
        callback()
    limit: Deadline | None = getattr(_local, "deadline", None)
    if limit is not None and conn.sock is not None:
        _watchdog.arm(limit, conn.sock)


class _Connection(HTTPConnection):
    def getresponse(self) -> Any:  # the request is sent; the answer is about to be read
        _register(self)
        return super().getresponse()


class _TLSConnection(HTTPSConnection):
    def getresponse(self) -> Any:
        _register(self)
        return super().getresponse()


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class DeadlineAdapter(HTTPAdapter):
    """The transport adapter that lets `deadline()` reach the sockets of a session."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
