"""Where one generation's time goes: before its request is sent, waiting, after the answer.

    PHASES=out.txt python bench/phases.py SDCLI_ARGS...    e.g. --url URL generate … 'a cat'

Runs `sdcli SDCLI_ARGS` in this interpreter and appends one line to $PHASES: wall and CPU
milliseconds (CPU: the process's, every thread) from start to the moment the txt2img/img2img
request is written to the socket, from then to the answer's first byte, and from then to the
end. Wall time on a shared machine is noise; the CPU columns say what a change moved: work
done while waiting (the middle CPU column) is work the request no longer waits for. Alternate
two versions run by run (PYTHONPATH=one tree, then the other) and compare medians.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import runpy
import socket
import sys
import time
from typing import Any

T0 = (time.perf_counter(), time.process_time())
marks: dict[str, tuple[float, float]] = {}
watched: set[int] = set()
_sendall = socket.socket.sendall
_recv_into = socket.socket.recv_into


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def sendall(self: socket.socket, data: Any, *args: Any) -> None:
    head = bytes(data[:40])
    if head.startswith(b"POST ") and b"2img " in head and "sent" not in marks:
        marks["sent"] = _now()
        watched.add(id(self))
    _sendall(self, data, *args)


def recv_into(self: socket.socket, *args: Any) -> int:
    n = _recv_into(self, *args)
    if id(self) in watched and "answered" not in marks:
        marks["answered"] = _now()
    return n


def main() -> None:
    socket.socket.sendall = sendall  # type: ignore[method-assign,assignment]
    socket.socket.recv_into = recv_into  # type: ignore[method-assign,assignment]
    sys.argv = ["sdcli", *sys.argv[1:]]
    with contextlib.suppress(SystemExit):
        runpy.run_module("sdcli", run_name="__main__")
    end = _now()
    if "answered" not in marks:
        raise SystemExit("no generation request was answered")
    points = [T0, marks["sent"], marks["answered"], end]
    walls = [(b[0] - a[0]) * 1000 for a, b in itertools.pairwise(points)]
    cpus = [(b[1] - a[1]) * 1000 for a, b in itertools.pairwise(points)]
    with open(os.environ["PHASES"], "a", encoding="utf-8") as out:
        out.write(" ".join(f"{v:.1f}" for v in (*walls, *cpus)) + "\n")


if __name__ == "__main__":
    main()
