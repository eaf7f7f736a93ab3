"""Keep glibc from handing each image's buffers back to the OS between requests.

Every answer is a few large buffers (the JSON body, its text, the base64 strings, the PNG bytes:
~7 MB for one 1024x1024 image), all freed before the next request. glibc trims the freed top of
the heap each time, so the next answer faults the same memory in again: ~1,800 page faults an
image, ~10% of the client's time per image in a long `generate -` run (bench/RESULTS.md). Fixed
thresholds stop that; the peak is unchanged, the process just keeps what it already used.
"""

from __future__ import annotations

import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest; also the top of its own dynamic range
_TRIM_THRESHOLD = 2 * _MMAP_THRESHOLD  # the ratio glibc's dynamic thresholds keep

_done = False


def keep_freed_heap() -> None:
    """Once per process, on glibc only; anywhere else (or on any failure) it does nothing."""
    global _done
    if _done:
        return
    _done = True
    if not sys.platform.startswith("linux"):
        return
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return  # musl and others: other allocators, other rules
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    except (OSError, ValueError, AttributeError):
        return


class KeepHeap:
    """A sink (sdcli.events) for front ends that run many requests in one process: keeps the
    heap from the second request on (a single image never pays for the mallopt calls)."""

    def __init__(self) -> None:
        self._saved = False

    def __call__(self, event: object) -> None:
        from sdcli.events import ImageSaved, UnitStarted

        if isinstance(event, ImageSaved):
            self._saved = True
        elif isinstance(event, UnitStarted) and self._saved:
            keep_freed_heap()
