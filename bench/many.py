"""Figure m: many prompts (issue 17) — the client's cost per image and its peak memory as a
run grows from 1,000 to 10,000 prompts, with and without the run journal.

    .venv/bin/python bench/many.py [--sizes 1000,10000] [--rounds 1] [--markdown FILE]

One `sdcli generate --prompts-file` process per run against the fake web UI (in threads of this
process, instant: step delay 0, 64x64 images, so what is measured is the client), each run
with a fresh SDCLI_HOME (history and journal start empty, as on a first run). Per image: the
client's CPU time (user + system, from wait4) and the wall time of the whole run, divided by
the prompts; peak RSS is the client's own ru_maxrss (see run.py's launcher). The floor
(bench/floor.py, one POST per prompt over one session) runs the smallest size for context.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from run import (  # noqa: E402
    MB,
    PYTHON,
    SDCLI,
    Report,
    Run,
    alternate,
    check,
    child_env,
    compile_bytecode,
    machine,
    run_child,
    series,
    table,
)

from sdcli.testing.fake_webui import FakeWebUI  # noqa: E402

SIZE = 64
STEPS = 2


def prompts(n: int) -> bytes:
    return "".join(f"a lighthouse at dusk, watercolour, #{i}\n" for i in range(n)).encode()


def count_images(out: Path) -> int:
    return sum(1 for p in out.iterdir() if p.suffix == ".png")


class Bench:
    def __init__(self, fake: FakeWebUI, tmp: Path) -> None:
        self.fake = fake
        self.tmp = tmp
        self.serial = 0

    def fresh(self, name: str) -> Path:
        self.serial += 1
        path = self.tmp / f"{name}-{self.serial:04d}"
        path.mkdir()
        return path

    def sdcli(self, n: int, *extra: str) -> Callable[[], Run]:
        """`sdcli generate --prompts-file` of `n` prompts, with a fresh home each run."""
        lines = self.tmp / f"prompts-{n}.txt"
        if not lines.exists():
            lines.write_bytes(prompts(n))

        def contender() -> Run:
            out, home = self.fresh("out"), self.fresh("home")
            env = child_env(self.fake.url, self.tmp)
            env["SDCLI_HOME"] = str(home)
            argv = [SDCLI, "generate", "--size", f"{SIZE}x{SIZE}", "--steps", str(STEPS),
                    "--prompts-file", str(lines), "-o", str(out), "-q", *extra]  # fmt: skip
            run = check(run_child(argv, env, memory=True), f"sdcli {n}")
            made = count_images(out)
            if made != n:
                raise SystemExit(f"sdcli {n} {extra}: {made} images, not {n}")
            if "--no-journal" not in extra:
                journal_check(home / "runs.db", n)
            shutil.rmtree(out)
            shutil.rmtree(home)
            return run

        return contender

    def floor(self, n: int) -> Callable[[], Run]:
        payload = json.dumps({"steps": STEPS, "width": SIZE, "height": SIZE})

        def contender() -> Run:
            out = self.fresh("floor")
            env = child_env(self.fake.url, self.tmp)
            argv = [PYTHON, str(BENCH / "floor.py"), self.fake.url, str(out), payload, "-"]
            run = check(run_child(argv, env, stdin=prompts(n), memory=True), f"floor {n}")
            if count_images(out) != n:
                raise SystemExit(f"floor {n}: {count_images(out)} images, not {n}")
            shutil.rmtree(out)
            return run

        return contender


def per_image(n: int, what: str) -> Callable[[Run], float]:
    """A run's seconds (wall or CPU) per image."""
    return lambda run: float(getattr(run, what)) / n


def journal_check(path: Path, n: int) -> None:
    """The run's journal says every unit is done, and the run finished."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        done = conn.execute("SELECT count(*) FROM units WHERE state = 'done'").fetchone()[0]
        finished = conn.execute("SELECT finished FROM runs").fetchone()[0]
    if done != n or finished is None:
        raise SystemExit(f"journal: {done} units done of {n}, finished {finished}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="prompt counts (default 1000,10000)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per size (default 1)")
    parser.add_argument("--markdown", type=Path, help="also write the report to FILE")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    report = Report()
    report.add(f"## Figure m: many prompts ({machine()})\n")
    with tempfile.TemporaryDirectory(prefix="sdcli-bench-many-") as tmp_name:
        tmp = Path(tmp_name)
        fake = FakeWebUI(step_delay=0.0).start()
        try:
            compile_bytecode(child_env(fake.url, tmp))
            bench = Bench(fake, tmp)
            per_cpu: dict[tuple[int, str], float] = {}
            per_rss: dict[tuple[int, str], float] = {}
            for n in sizes:
                contenders = [
                    (f"sdcli, {n} prompts, journal", bench.sdcli(n)),
                    (f"sdcli, {n} prompts, --no-journal", bench.sdcli(n, "--no-journal")),
                ]
                if n == min(sizes):
                    contenders.append((f"floor, {n} prompts", bench.floor(n)))
                # One warm-up, at the smallest size: it compiles nothing more at the larger.
                runs = alternate(args.rounds, contenders, f"m {n}", warm_up=n == min(sizes))
                wall = series(contenders, runs, per_image(n, "seconds"))
                cpu = series(contenders, runs, per_image(n, "cpu"))
                rss = series(contenders, runs, lambda r: r.maxrss / MB)
                for (name, _), c, m in zip(contenders, cpu, rss, strict=True):
                    kind = "journal" if name.endswith("journal") and "no-" not in name else name
                    kind = "no-journal" if "--no-journal" in name else kind
                    per_cpu[(n, kind)] = c.median
                    per_rss[(n, kind)] = m.median
                report.add(
                    f"### {n} prompts ({args.rounds} round(s) after a warm-up)\n\n"
                    "Per image, client CPU (user + system) ÷ prompts:\n\n"
                    + table(cpu, "ms", cpu[1], scale=1000)
                    + "\n\nPer image, wall time of the whole run ÷ prompts:\n\n"
                    + table(wall, "ms", wall[1], scale=1000)
                    + "\n\nPeak RSS of the client:\n\n"
                    + table(rss, "MB", rss[1])
                    + "\n"
                )
        finally:
            fake.stop()
    small, big = min(sizes), max(sizes)
    if small != big:
        for kind in ("journal", "no-journal"):
            ratio = per_cpu[(big, kind)] / per_cpu[(small, kind)]
            report.target(
                "m",
                f"CPU per image at {big} ≤ 1.1× at {small} ({kind})",
                f"{ratio:.3f}×",
                ratio <= 1.1,
            )
            grew = per_rss[(big, kind)] - per_rss[(small, kind)]
            report.target(
                "m",
                f"peak RSS at {big} within 5 MB of {small} ({kind})",
                f"{per_rss[(small, kind)]:.1f} MB → {per_rss[(big, kind)]:.1f} MB",
                grew <= 5.0,
            )
    for n in sizes:
        ratio = per_cpu[(n, "journal")] / per_cpu[(n, "no-journal")]
        report.target(
            "m", f"CPU per image with the journal ≤ 1.1× without ({n})", f"{ratio:.3f}×",
            ratio <= 1.1,
        )  # fmt: skip
    if args.markdown:
        args.markdown.write_text("\n".join(report.sections) + "\n", encoding="utf-8")
    return 0 if all(t.ok for t in report.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
