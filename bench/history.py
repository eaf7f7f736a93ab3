"""The history at 10,000 generations: `sdcli history` and searches, as whole processes.

Run on demand: `.venv/bin/python bench/history.py [--rows 10000] [--rounds 15]`. Each command
is a whole `sdcli` process (start-up, imports, exit) in a pipe, as a script would run it, against
a database filled with `--rows` generations of one image each; medians over the rounds, after
one warm-up, contenders alternated. Two floors: `sdcli --version` (Python and sdcli, no typer)
and `sdcli presets list` (a typer command that reads only local files): what any command costs
before the history is opened.
CPU time (user + system, from wait4) is shown beside wall time: on a shared machine the wall
time also measures the other processes. The exit code is 1 when a median CPU time misses the
target (0.1 s).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from run import ROOT, child_env, compile_bytecode, run_child

TARGET = 0.1  # seconds, a whole command
SDCLI = str(Path(sys.executable).parent / "sdcli")
WORDS = [
    "lighthouse",
    "dusk",
    "cat",
    "dog",
    "portrait",
    "chibi",
    "1boy",
    "1girl",
    "solo",
    "smile",
    "forest",
    "river",
    "castle",
    "neon",
    "city",
    "rain",
    "snow",
    "mountain",
    "ocean",
    "sunset",
    "watercolor",
    "sketch",
    "masterpiece",
    "detailed",
    "purple",
    "shirt",
    "ipad",
    "black",
    "hair",
    "holding",
    "sword",
    "dragon",
    "robot",
    "space",
    "station",
    "garden",
    "flowers",
    "night",
    "stars",
]


def fill(path: Path, rows: int) -> None:
    """`rows` generations with one image each, prompts drawn from WORDS (seeded: repeatable)."""
    sys.path.insert(0, str(ROOT))
    from sdcli.history.store import connect

    rng = random.Random(13)
    conn = connect(path)
    conn.execute("BEGIN")
    for n in range(rows):
        prompt = ", ".join(rng.sample(WORDS, 8))
        body = {"prompt": prompt, "steps": 20, "seed": n, "width": 512, "height": 512}
        cursor = conn.execute(
            """INSERT INTO generations (started, seconds, outcome, mode, server, model,
                model_hash, prompt, negative_prompt, seed, request, presets, command)
            VALUES (?, 2.5, ?, 'txt2img', 'http://127.0.0.1:7860', ?, 'abcdef1234', ?,
                'lowres, bad hands', ?, ?, ?, '["sdcli", "generate"]')""",
            (
                f"2026-{1 + n * 11 // rows:02d}-{1 + n % 28:02d}T12:00:00.000Z",
                "failed" if n % 50 == 0 else "ok",
                rng.choice(("sd15", "sdxl_base", "counterfeitV30")),
                prompt,
                n,
                json.dumps(body),
                json.dumps([rng.choice(("chibi", "sd15", "draft"))]),
            ),
        )
        conn.execute(
            "INSERT INTO images (generation_id, path, sha256, seed) VALUES (?, ?, ?, ?)",
            (cursor.lastrowid, f"/tmp/out/{n:05d}.png", f"{n:064x}", n),
        )
    conn.execute("COMMIT")
    conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sdcli-bench-history-") as tmp:
        home = Path(tmp)
        fill(home / "history.db", args.rows)
        env = child_env("http://127.0.0.1:9", home)
        env["SDCLI_HOME"] = str(home)
        compile_bytecode(env)
        commands = {
            "sdcli --version (start-up alone)": ["--version"],
            "sdcli presets list (a typer command)": ["presets", "list"],
            "sdcli history": ["history"],
            "sdcli history lighthouse dusk": ["history", "lighthouse", "dusk"],
            "sdcli history light --json": ["history", "light", "--json"],
            "sdcli history --model sdxl --failed": ["history", "--model", "sdxl", "--failed"],
            "sdcli history --since 30d -n 0 | wc": ["history", "--since", "2026-11-01", "-n", "0"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(args.rounds + 1):
            names = list(commands)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in names:
                run = run_child([SDCLI, *commands[name]], env)
                if run.returncode != 0:
                    sys.stderr.write(f"{name} failed: {run.stderr.decode()}\n")
                    return 1
                if round_:  # the first round warms the caches
                    times[name].append(run.seconds)
                    cpus[name].append(run.cpu)
        print(f"{args.rows} generations, {args.rounds} rounds, medians: wall (range), CPU")
        missed = False
        for name, values in times.items():
            median = statistics.median(values)
            cpu = statistics.median(cpus[name])
            floor = name.startswith(("sdcli --version", "sdcli presets"))
            check = "" if floor else "ok" if cpu < TARGET else "MISS"
            missed |= check == "MISS"
            spread = f"({min(values):.3f}–{max(values):.3f})"
            print(f"  {name:<40} {median:.3f} s {spread}  cpu {cpu:.3f} s  {check}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
