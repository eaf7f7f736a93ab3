"""Two commands in turn, N times each, and the median of their ratio pair by pair.

    python bench/pair.py N 'COMMAND A' 'COMMAND B'

A shared machine's speed drifts by more than the few percent a change to start-up is worth:
timing A's runs, then B's, compares two moments. Run in turn (A B A B …), each pair sees the
same moment, and the median of the per-pair ratios A/B is what to quote. Each command is split
as a shell splits words and started without a shell; its output is discarded. Prints, for wall
time and for CPU time (user + system, the kernel's accounting of the finished process), A's
and B's medians and the median ratio with its spread.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `argv`."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {shlex.join(argv)}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    if len(argv) != 4 or not argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    n, a, b = int(argv[1]), shlex.split(argv[2]), shlex.split(argv[3])
    timed(a), timed(b)  # warm-up: file caches, bytecode
    runs = [(timed(a), timed(b)) for _ in range(n)]
    for i, what in enumerate(("wall", "cpu")):
        ratios = sorted(ra[i] / rb[i] for ra, rb in runs)
        print(
            f"{what}: A {statistics.median(ra[i] for ra, _ in runs):.3f} s, "
            f"B {statistics.median(rb[i] for _, rb in runs):.3f} s, "
            f"A/B median {statistics.median(ratios):.3f} "
            f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
