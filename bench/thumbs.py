"""The thumbnail sink in one process: one saved 1024x1024 PNG drawn on a pseudo-terminal.

    python bench/thumbs.py [N]

Times `Thumbnails(mode)(ImageSaved(...))`, the sink `generate` runs after each saved image,
with stderr a pseudo-terminal drained by a thread (as a terminal reads it), for each mode:
the best of N (default 30) of the sink thread's CPU time (user + system: the write into the
pty is the kernel's work on this thread) and of its wall time, and the same for building the
picture without writing it. Figure f of bench/run.py measures whole processes; this one is
the drawing alone, which is what a change to the drawing path moves.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import inspect
import io
import os
import pty
import struct
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from sdcli.cli import pictures
from sdcli.cli.thumbnails import THUMB_COLUMNS, THUMB_ROWS, Thumbnails
from sdcli.events import ImageSaved
from sdcli.job import Unit
from sdcli.save import SavedImage
from sdcli.testing.fake_png import encode_png


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 1 << 16):
                return
        except OSError:
            return


def _event(data: bytes, encoded: str, path: Path) -> ImageSaved:
    fields = {f.name for f in dataclasses.fields(ImageSaved)}
    image = SavedImage(path, 1, "a cat", "", None, None, 1, 1)
    unit = Unit.__new__(Unit)  # the sink reads none of it
    extra = {"encoded": encoded} if "encoded" in fields else {}
    return ImageSaved(unit, "http://127.0.0.1:7860", image, data=data, **extra)


def _best(samples: list[tuple[float, float]]) -> str:
    cpu = min(s[0] for s in samples) * 1000
    wall = min(s[1] for s in samples) * 1000
    return f"CPU {cpu:6.2f} ms  wall {wall:6.2f} ms"


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 30
    data = encode_png(1024, 1024, 1234567, text={"parameters": "a cat\nSteps: 20, Seed: 1"})
    encoded = base64.b64encode(data).decode("ascii")  # as the server's JSON carries it
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name, "thumb.png")
    path.write_bytes(data)
    event = _event(data, encoded, path)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    raw = io.FileIO(slave, "w", closefd=False)
    tty = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", line_buffering=True)
    print(f"{len(data)} bytes of PNG, {len(encoded)} of base64; best of {n}")
    # the server's text, where this version of the drawing code takes it
    takes = inspect.signature(pictures.thumbnail).parameters
    given = {"encoded": encoded} if "encoded" in takes else {}
    saved = sys.stderr
    modes: tuple[tuple[str, pictures.Mode], ...] = (
        ("kitty", "kitty"),
        ("kitty, by path (t=f)", "kitty"),
        ("iterm", "iterm"),
        ("blocks", "blocks"),
    )
    for name, mode in modes:
        sink = Thumbnails(mode)
        if "t=f" in name:
            if not hasattr(sink, "by_path"):
                continue  # this version sends kitty the bytes only
            sink.by_path = True  # as kitty_reads_files says for kitty on this machine
        build, draw = [], []
        where = {"path": str(path)} if "t=f" in name else {}
        for _ in range(n):
            c0, w0 = time.thread_time(), time.perf_counter()
            pictures.thumbnail(data, mode, columns=THUMB_COLUMNS, rows=THUMB_ROWS, **given, **where)
            build.append((time.thread_time() - c0, time.perf_counter() - w0))
            sys.stderr = tty
            try:
                c0, w0 = time.thread_time(), time.perf_counter()
                sink(event)
                draw.append((time.thread_time() - c0, time.perf_counter() - w0))
            finally:
                sys.stderr = saved
        print(f"{name:20} picture built: {_best(build)}   sink, written to a pty: {_best(draw)}")
    os.close(slave)
    folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
