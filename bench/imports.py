"""What importing sdcli's own modules costs a warm `generate`, in instructions (callgrind).

    .venv/bin/python bench/imports.py                # the imports alone (two valgrind runs)
    .venv/bin/python bench/imports.py --whole        # and whole processes: warm generate with and
                                                     # without history, the floor
    .venv/bin/python bench/imports.py --each         # and what each module adds (~50 runs)
    .venv/bin/python bench/imports.py --list         # only print the modules, no valgrind

Wall time on a shared machine measures the neighbours too; an instruction count does not. The
module list comes from a real run: a fake web UI in this process, one `sdcli generate` to fill
the list cache, then a second (warm) one whose `sys.modules` at exit names every sdcli module it
loaded, in the order they were first imported. The import figure is then

    python -c "import requests, typer.main; import <those modules>"
  − python -c "import requests, typer.main"

each counted whole under `valgrind --tool=callgrind` with PYTHONHASHSEED=0 (string hashes change
the count otherwise), bytecode compiled beforehand. What the sdcli modules import of the standard
library and not already imported by requests or typer (sqlite3 for the history, say) is in it.
Both are also counted with the collector off (see QUIET): the work of the imports alone.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run import (
    BENCH,
    NEGATIVE,
    PYTHON,
    SDCLI,
    child_env,
    compile_bytecode,
)

from sdcli.testing.fake_webui import FakeWebUI

BASE = "import requests, typer.main"
# The same with the collector off and its objects frozen at the end, as sdcli's __main__ does for
# start-up: the work of the imports alone, without the collector's passes over every object, whose
# number and timing jump with small changes (a pass more or less is ~5-10 M).
QUIET, FROZEN, QUIET_LABEL = "import gc; gc.disable(); ", "; gc.freeze()", ", collector off"
SIZE = 1024
# Prints, at exit, the modules the run loaded (insertion order of sys.modules = import order).
LOADED = (
    "import runpy, sys\n"
    "sys.argv = ['sdcli', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('sdcli', run_name='__main__')\n"
    "finally:\n"
    "    sys.stderr.write('\\nLOADED=' + ' '.join(sys.modules) + '\\n')\n"
)


def generate_args(out: Path, *extra: str) -> list[str]:
    """The benchmark's one image (bench/run.py's figure a), as a shell loop would run it."""
    return [
        "generate", "--negative", NEGATIVE, "--steps", "27", "--cfg", "7", "--sampler", "UniPC",
        "--size", f"{SIZE}x{SIZE}", "-o", str(out), *extra, "a lighthouse at dusk",
    ]  # fmt: skip


def loaded_modules(env: dict[str, str], out: Path) -> list[str]:
    """The sdcli modules a warm `generate` loads, in import order."""
    done = subprocess.run(
        [PYTHON, "-c", LOADED, *generate_args(out)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"generate failed:\n{done.stderr}")
    loaded = done.stderr.rpartition("LOADED=")[2].split()
    return [m for m in loaded if m == "sdcli" or m.startswith("sdcli.")]


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """Instructions of a whole process under callgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{argv!r} under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def completion_order(modules: list[str], env: dict[str, str]) -> list[str]:
    """`modules` in the order their imports finish (-X importtime's order): importing them one
    after another in it, each one's imports are done before it, so each adds only itself and
    what it is the first to import."""
    code = f"{BASE}; import {', '.join(modules)}"
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True
    )
    logged = [line.rpartition("|")[2].strip() for line in done.stderr.splitlines()]
    ordered = [name for name in logged if name in modules]
    return ordered + [name for name in modules if name not in ordered]


def each(modules: list[str], env: dict[str, str]) -> str:
    """A table: the instructions each module adds, collector off, most first."""
    ordered = completion_order(modules, env)
    codes = [
        f"{QUIET}{BASE}; import {', '.join(ordered[:k])}{FROZEN}"
        for k in range(1, 1 + len(ordered))
    ]
    with ThreadPoolExecutor(2) as pool:  # valgrind is single-threaded: two at a time
        counts = list(
            pool.map(
                lambda code: instructions([PYTHON, "-c", code], env),
                [f"{QUIET}{BASE}{FROZEN}", *codes],
            )
        )
    added = sorted(
        ((b - a, name) for a, b, name in zip(counts[:-1], counts[1:], ordered, strict=True)),
        reverse=True,
    )
    rows = [f"| `{name}` | {n / 1e6:.2f} |" for n, name in added]
    head = "| module (and what it is the first to import) | M instructions |\n| --- | ---: |"
    return "\n".join([head, *rows])


def millions(n: int) -> str:
    return f"{n / 1e6:.1f} M"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--whole", action="store_true", help="also count whole processes")
    parser.add_argument("--list", action="store_true", help="print the modules and stop")
    parser.add_argument(
        "--each", action="store_true", help="also what each module adds (a valgrind run each)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdcli-imports-") as tmp, FakeWebUI(port=0) as fake:
        env = child_env(fake.url, Path(tmp))
        compile_bytecode(env)
        out = Path(tmp) / "out"
        out.mkdir()
        first = subprocess.run([SDCLI, *generate_args(out)], env=env, capture_output=True)
        if first.returncode != 0:
            raise SystemExit(f"the first generate failed:\n{first.stderr.decode()}")
        modules = loaded_modules(env, out)
        print(f"{len(modules)} sdcli modules loaded by a warm generate:", " ".join(modules))
        if args.list:
            return 0
        for label, before, after in (("", "", ""), (QUIET_LABEL, QUIET, FROZEN)):
            base = instructions([PYTHON, "-c", f"{before}{BASE}{after}"], env)
            both = instructions(
                [PYTHON, "-c", f"{before}{BASE}; import {', '.join(modules)}{after}"], env
            )
            print(f"`{BASE}`{label}: {millions(base)}")
            print(f"sdcli's modules on top of it{label}: {millions(both - base)}")
        if args.each:
            print(each(modules, env))
        if args.whole:
            for label, extra in (("", ()), (" --no-history", ("--no-history",))):
                n = instructions([SDCLI, *generate_args(out, *extra)], env)
                label = f"warm generate{label}"
                print(f"{label}, whole process: {millions(n)}")
            payload = json.dumps(
                {"negative_prompt": NEGATIVE, "steps": 27, "cfg_scale": 7, "width": SIZE,
                 "height": SIZE, "sampler_name": "UniPC", "batch_size": 1}
            )  # fmt: skip
            floor = [PYTHON, str(BENCH / "floor.py"), fake.url, str(out), payload, "a lighthouse"]
            print(f"the floor, whole process: {millions(instructions(floor, env))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
