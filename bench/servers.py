"""Figure k: one run of N prompts on 1, 2 and 4 servers, side by side (issue 17).

    .venv/bin/python bench/servers.py [--prompts 24] [--steps 10] [--step-delay 0.1] [--rounds 3]

Every server is a fake web UI in a thread of this process, sleeping `--step-delay` seconds a
sampling step (the machine has 2 shared cores: the sleeping, not the CPU, must set the pace).
Each contender is one whole `sdcli generate --prompts-file` process with `--url` once per server;
the contenders alternate, the order rotating every round, after one warm-up round each. The
target: k servers finish in at most 1/(0.9·k) of the one-server time, for k = 2 and 4.
Exit code 1 when a target is missed. See bench/README.md and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from run import (
    SDCLI,
    Report,
    Run,
    alternate,
    check,
    child_env,
    compile_bytecode,
    machine,
    pngs_in,
    prompts,
    run_child,
    series,
    table,
)

from sdcli.testing.fake_webui import FakeWebUI

SERVERS = (1, 2, 4)
SIZE = 64  # small images: the client's work per image is tiny beside the fake's sleeping


def contender(
    tmp: Path, env: dict[str, str], urls: Sequence[str], prompt_file: Path, args: argparse.Namespace
) -> Callable[[], Run]:
    """One whole sdcli process over `urls`; checks it saved one PNG per prompt."""
    serial = [0]

    def run() -> Run:
        serial[0] += 1
        out = tmp / f"k{len(urls)}-{serial[0]:03d}"
        out.mkdir()
        flags = [word for url in urls for word in ("--url", url)]
        argv = [SDCLI, *flags, "generate", "--steps", str(args.steps),
                "--size", f"{SIZE}x{SIZE}", "--seed", "1", "-o", str(out),
                "--prompts-file", str(prompt_file)]  # fmt: skip
        done = check(run_child(argv, env, cwd=out), f"{len(urls)} server(s)")
        pngs_in(out, args.prompts, f"{len(urls)} server(s)")
        shutil.rmtree(out)
        return done

    return run


def figure_k(args: argparse.Namespace, report: Report) -> None:
    fakes = [FakeWebUI(step_delay=args.step_delay).start() for _ in range(max(SERVERS))]
    try:
        with tempfile.TemporaryDirectory(prefix="sdcli-bench-k-") as name:
            tmp = Path(name)
            env = child_env(fakes[0].url, tmp)
            compile_bytecode(env)
            prompt_file = tmp / "prompts.txt"
            prompt_file.write_text("\n".join(prompts(args.prompts)) + "\n")
            contenders = [
                (
                    f"{k} server{'s' if k > 1 else ''}",
                    contender(tmp, env, [f.url for f in fakes[:k]], prompt_file, args),
                )
                for k in SERVERS
            ]
            runs = alternate(args.rounds, contenders, "k")
            per_server = {f.url: len(f.requests_to("/sdapi/v1/txt2img")) for f in fakes}
    finally:
        for fake in fakes:
            fake.stop()
    wall = series(contenders, runs, lambda r: r.seconds)
    sleep = args.prompts * (args.steps + 1) * args.step_delay  # the fake's first step is slow
    report.add(
        f"### k. {args.prompts} prompts on 1, 2 and 4 servers ({args.rounds} rounds)\n\n"
        f"Fakes at {args.step_delay:g} s a step, {args.steps} steps of {SIZE}×{SIZE} (and the "
        f"slow first step): {sleep:g} s of sampling in all, {sleep / 4:g} s on each of 4 "
        "servers. Whole `sdcli generate --prompts-file` process, "
        "wall time:\n\n" + table(wall, "s", wall[0]) + "\n\n"
        f"Requests each fake answered over every run: {sorted(per_server.values())}\n"
    )
    one = wall[0].median
    for k, s in zip(SERVERS[1:], wall[1:], strict=True):
        bound = one / (0.9 * k)
        report.target(
            "k",
            f"{k} servers ≤ 1/(0.9·{k}) of one server's time ({bound:.2f} s)",
            f"{s.median:.2f} s, {one / s.median:.2f}× faster",
            s.median <= bound,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=24, help="prompts in a run (default 24)")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps (default 10)")
    parser.add_argument("--step-delay", type=float, default=0.1, help="seconds a step (0.1)")
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds (default 3)")
    args = parser.parse_args(argv)
    report = Report()
    report.add(f"{machine()}\n")
    figure_k(args, report)
    for t in report.targets:
        print(f"target {t.figure}: {t.text}: {t.measured} -> {'PASS' if t.ok else 'FAIL'}")
    return 0 if all(t.ok for t in report.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
