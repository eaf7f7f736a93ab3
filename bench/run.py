"""sdcli's benchmarks: whole client processes against the fake web UI, side by side in one run.

    .venv/bin/python bench/run.py [--only a,b,c,d,e,l] [--rounds N] [--markdown FILE]

Each figure alternates its contenders over several rounds (the order rotates every round) and
reports medians and ratios, so drift and other load on the machine fall on every contender alike.
The fake runs in threads of this process; every client runs as its own process, with bytecode
compiled and PYTHONDONTWRITEBYTECODE removed, as after a normal install. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.metadata
import json
import operator
import os
import platform
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from delay_proxy import DelayProxy  # noqa: E402

from sdcli.testing.fake_png import encode_png  # noqa: E402
from sdcli.testing.fake_webui import FakeWebUI  # noqa: E402

PYTHON = sys.executable
SDCLI = str(Path(PYTHON).with_name("sdcli"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MB = 1024 * 1024
NEGATIVE = (
    "EasyNegative, (worst quality:1.4), (low quality:1.4),  extra fingers, fewer fingers, blurry, "
    "watermark, logo, text, error, blurry, inaccurate eyes, extra digit,fewer digits, bad anatomy, "
    "bad hands, username, words"
)
SEED_PROMPT = (
    "1boy, solo, chibi, black hair, solo, holding iPad, purple shirt, ((round black glasses)), "
    "cool, broad face, tall,  slim, white skin, (green background), with legs and shoes, "
    "standing, full body, (burr cut: 1.3), short hair, (big forehead: 1.3), black eyes"
)
SUBJECTS = ("a lighthouse at dusk", "a red fox in snow", "a city street in rain", "a teapot")
STYLES = ("watercolour", "oil painting", "photo, 35mm", "pixel art", "ink sketch")
POLL_PATHS = ("/internal/progress", "/sdapi/v1/progress")
HTTP_OR_IMAGE_MODULES = ("requests", "urllib3", "http.client", "ssl", "PIL", "charset_normalizer")


# Forks the client, waits for it and writes its own peak RSS (ru_maxrss) to the file argv[1].
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_pid, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


# --- running a client -------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished child process: wall time, peak resident memory, exit code, what it printed."""

    seconds: float
    cpu: float  # user + system seconds of the client itself (under `memory`: and the launcher)
    maxrss: int  # bytes
    returncode: int
    stdout: bytes
    stderr: bytes


def run_child(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path | None = None,
    stdin: bytes = b"",
    stderr_fd: int | None = None,
    memory: bool = False,
) -> Run:
    """Run a process to its end; wait4() gives its resources, not the max over all children.

    Linux carries the parent's peak RSS over into a forked child's ru_maxrss across exec, and this
    process hosts the fake. With `memory`, a small launcher forks the client instead, so its
    ru_maxrss is the client's own; timings are taken without the launcher.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rss_file = None
        if memory:
            fd, name = tempfile.mkstemp(prefix="sdcli-bench-rss-")
            os.close(fd)
            rss_file = Path(name)
            argv = [PYTHON, "-I", "-S", "-c", LAUNCHER, name, *argv]
        started = time.perf_counter()
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err if stderr_fd is None else stderr_fd,
            env=env,
            cwd=cwd,
        )
        assert child.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            child.stdin.write(stdin)  # at most a few kB: fits the pipe buffer
        child.stdin.close()
        _pid, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        maxrss = usage.ru_maxrss
        if rss_file is not None:
            maxrss = int(rss_file.read_text() or 0)
            rss_file.unlink()
        maxrss *= 1 if sys.platform == "darwin" else 1024
        cpu = usage.ru_utime + usage.ru_stime
        return Run(seconds, cpu, maxrss, child.returncode, out.read(), err.read())


def check(run: Run, what: str) -> Run:
    if run.returncode != 0:
        tail = run.stderr.decode(errors="replace")[-2000:]
        raise SystemExit(f"bench: {what} exited {run.returncode}\n{tail}")
    return run


def pngs_in(directory: Path, expected: int, what: str) -> int:
    """Check the contender really wrote `expected` PNG files; their total size in bytes."""
    files = sorted(directory.rglob("*.png"))
    if len(files) != expected:
        raise SystemExit(f"bench: {what} wrote {len(files)} PNG files, expected {expected}")
    total = 0
    for path in files:
        data = path.read_bytes()
        if not data.startswith(PNG_SIGNATURE):
            raise SystemExit(f"bench: {what} wrote {path}, which is not a PNG")
        total += len(data)
    return total


# --- the context shared by the figures ------------------------------------------------------------


@dataclass
class Context:
    fake: FakeWebUI
    tmp: Path
    env: dict[str, str]
    size: int
    steps: int
    _serial: int = 0

    @property
    def url(self) -> str:
        return self.fake.url

    def fresh_dir(self) -> Path:
        self._serial += 1
        path = self.tmp / f"run{self._serial:05d}"
        path.mkdir()
        return path

    def payload(self, batch_size: int = 1) -> dict[str, object]:
        """The request body every contender sends (the seed's settings, at the benchmark size)."""
        return {
            "negative_prompt": NEGATIVE,
            "steps": self.steps,
            "cfg_scale": 7,
            "width": self.size,
            "height": self.size,
            "sampler_name": "UniPC",
            "batch_size": batch_size,
        }

    def sdcli_generate(self, out: Path, *extra: str) -> list[str]:
        """`sdcli generate` with the same settings as the payload, as a user would type it."""
        return [
            SDCLI,
            "generate",
            "--negative",
            NEGATIVE,
            "--steps",
            str(self.steps),
            "--cfg",
            "7",
            "--sampler",
            "UniPC",
            "--size",
            f"{self.size}x{self.size}",
            "-o",
            str(out),
            *extra,
        ]

    def floor(self, out: Path, *prompt: str, batch_size: int = 1) -> list[str]:
        payload = json.dumps(self.payload(batch_size))
        return [PYTHON, str(BENCH / "floor.py"), self.url, str(out), payload, *prompt]


def child_env(url: str, tmp: Path) -> dict[str, str]:
    """The environment of a normal install: bytecode is written and read; no user settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith(("SDCLI_", "SEED_"))
    }
    env.update(
        SDCLI_URL=url,
        SDCLI_CONFIG=str(tmp / "no-config.toml"),  # absent: built-in defaults
        SDCLI_HOME=str(tmp / "sdcli-home"),  # its list cache: warm after the first run
        SEED_URL=url,
    )
    return env


def compile_bytecode(env: dict[str, str]) -> None:
    """Compile site-packages and sdcli once, so no contender pays for compiling on first import."""
    targets = [sysconfig.get_paths()["purelib"], str(ROOT / "sdcli")]
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", "-j", "0", *targets],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


# --- statistics and reporting ---------------------------------------------------------------------


@dataclass
class Series:
    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> str:
        return f"{min(self.values):.3f}–{max(self.values):.3f}"


@dataclass
class Target:
    figure: str
    text: str
    measured: str
    ok: bool


@dataclass
class Report:
    sections: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def add(self, text: str) -> None:
        print(text, flush=True)
        self.sections.append(text)

    def target(self, figure: str, text: str, measured: str, ok: bool) -> None:
        self.targets.append(Target(figure, text, measured, ok))
        print(f"  target {figure}: {text}: {measured} -> {'PASS' if ok else 'FAIL'}", flush=True)


def alternate(
    rounds: int,
    contenders: Sequence[tuple[str, Callable[[], Run]]],
    label: str,
    *,
    warm_up: bool = True,
) -> list[list[Run]]:
    """Run every contender once per round, rotating the order; one warm-up round first, unless
    the caller's runs are already warm."""
    runs: list[list[Run]] = [[] for _ in contenders]
    for name, fn in contenders if warm_up else ():
        print(f"  [{label}] warm-up: {name}", file=sys.stderr, flush=True)
        fn()
    for r in range(rounds):
        order = list(range(len(contenders)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            runs[i].append(contenders[i][1]())
        print(f"  [{label}] round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return runs


def series(
    contenders: Sequence[tuple[str, object]],
    runs: Sequence[Sequence[Run]],
    value: Callable[[Run], float],
) -> list[Series]:
    return [
        Series(name, [value(r) for r in rs]) for (name, _), rs in zip(contenders, runs, strict=True)
    ]


def paired(a: Series, b: Series, op: Callable[[float, float], float]) -> float:
    """The median of `op(a, b)` round by round (both series from one `alternate`)."""
    return statistics.median(op(x, y) for x, y in zip(a.values, b.values, strict=True))


def table(series: Sequence[Series], unit: str, base: Series | None, scale: float = 1.0) -> str:
    against = base.name if base else "-"
    rows = [f"| contender | median ({unit}) | range ({unit}) | ratio to {against} |"]
    rows.append("| --- | ---: | ---: | ---: |")
    for s in series:
        ratio = f"{s.median / base.median:.2f}×" if base else "-"
        lo, hi = min(s.values) * scale, max(s.values) * scale
        rows.append(f"| {s.name} | {s.median * scale:.3f} | {lo:.3f}–{hi:.3f} | {ratio} |")
    return "\n".join(rows)


# --- the figures ----------------------------------------------------------------------------------


def in_fresh_dir(
    ctx: Context, argv: Callable[[Path], list[str]], images: int, what: str, **kw: Any
) -> Callable[[], Run]:
    """A contender: run `argv(dir)` in a new directory, check it wrote `images` PNGs, clean up."""

    def contender() -> Run:
        out = ctx.fresh_dir()
        run = check(run_child(argv(out), ctx.env, cwd=out, **kw), what)
        pngs_in(out, images, what)
        shutil.rmtree(out)
        return run

    return contender


def figure_a(ctx: Context, rounds: int, report: Report) -> None:
    """One image as a whole process: sdcli vs the seed's method vs the floor."""

    def seed(out: Path) -> list[str]:
        (out / "result").mkdir()  # the post writes into ./result/, which must exist
        return [PYTHON, str(BENCH / "seed_method.py")]

    contenders = [
        (
            "sdcli generate",
            in_fresh_dir(ctx, lambda o: ctx.sdcli_generate(o, SEED_PROMPT), 1, "sdcli"),
        ),
        ("seed's method", in_fresh_dir(ctx, seed, 1, "the seed's method")),
        ("floor", in_fresh_dir(ctx, lambda o: ctx.floor(o, SEED_PROMPT), 1, "the floor")),
    ]
    runs = alternate(rounds, contenders, "a")
    wall = series(contenders, runs, lambda r: r.seconds)
    cpu = series(contenders, runs, lambda r: r.cpu)
    report.add(
        f"### a. One {ctx.size}×{ctx.size} image, whole process ({rounds} rounds)\n\n"
        + "Wall time:\n\n"
        + table(wall, "s", wall[2])
        + "\n\nCPU time of the client process (user + system; the server's is not in it):\n\n"
        + table(cpu, "s", cpu[2])
        + "\n"
    )
    ratio = wall[0].median / wall[2].median
    report.target("a", "sdcli ≤ 1.25× the floor, one image", f"{ratio:.2f}×", ratio <= 1.25)


def prompts(n: int) -> list[str]:
    return [f"{SUBJECTS[i % len(SUBJECTS)]}, {STYLES[i % len(STYLES)]}, #{i}" for i in range(n)]


def figure_b(ctx: Context, rounds: int, count: int, report: Report) -> None:
    """Many prompts: one sdcli reading stdin vs a shell loop of sdcli vs the floor's loop."""
    lines = ("\n".join(prompts(count)) + "\n").encode()
    loop = 'while IFS= read -r p; do "$@" "$p" || exit 1; done'
    contenders = [
        (
            f"`sdcli generate -`, {count} prompts on stdin",
            in_fresh_dir(
                ctx, lambda o: [*ctx.sdcli_generate(o), "-"], count, "sdcli -", stdin=lines
            ),
        ),
        (
            f"shell loop of {count} `sdcli generate`",
            in_fresh_dir(
                ctx,
                lambda o: ["sh", "-c", loop, "sh", *ctx.sdcli_generate(o)],
                count,
                "loop",
                stdin=lines,
            ),
        ),
        (
            f"floor, {count} prompts in one process",
            in_fresh_dir(ctx, lambda o: ctx.floor(o, "-"), count, "floor -", stdin=lines),
        ),
    ]
    runs = alternate(rounds, contenders, "b")
    wall = series(contenders, runs, lambda r: r.seconds)
    per = series(contenders, runs, lambda r: r.seconds / count)
    cpu = series(contenders, runs, lambda r: r.cpu / count)
    report.add(
        f"### b. {count} prompts ({rounds} rounds)\n\nWhole run, wall time:\n\n"
        + table(wall, "s", wall[2])
        + "\n\nPer image: wall time of the whole run ÷ prompts (start-up included):\n\n"
        + table(per, "ms", per[2], scale=1000)
        + "\n\nPer image: CPU time of the client (user + system; the shell loop's includes "
        "every sdcli start-up) ÷ prompts:\n\n" + table(cpu, "ms", cpu[2], scale=1000) + "\n"
    )
    ratio = per[0].median / per[2].median
    report.target(
        "b", "per image in one process ≤ 1.05× the floor's", f"{ratio:.3f}×", ratio <= 1.05
    )


def import_check(ctx: Context, report: Report) -> None:
    """`python -X importtime`: what each quick command imports; no HTTP or image library."""
    image = ctx.tmp / "info-sample.png"
    image.write_bytes(encode_png(64, 64, 1, text={"parameters": f"{SEED_PROMPT}\nSteps: 27"}))
    commands = [["--version"], ["--help"], ["presets", "list"], ["info", str(image)]]
    rows = ["| command | modules imported | import time (ms, sum of self) | HTTP/image modules |"]
    rows.append("| --- | ---: | ---: | --- |")
    clean = True
    for args in commands:
        run = check(run_child([PYTHON, "-X", "importtime", SDCLI, *args], ctx.env), f"sdcli {args}")
        names, total = [], 0
        for line in run.stderr.decode(errors="replace").splitlines():
            if not line.startswith("import time:") or "imported package" in line:
                continue
            self_us, _cumulative, name = line[len("import time:") :].split("|")
            total += int(self_us)
            names.append(name.strip())
        bad = sorted(
            {n for n in names for m in HTTP_OR_IMAGE_MODULES if n == m or n.startswith(m + ".")}
        )
        clean = clean and not bad
        shown = "sdcli " + " ".join("IMAGE" if a == str(image) else a for a in args)
        rows.append(
            f"| `{shown}` | {len(names)} | {total / 1000:.0f} | {', '.join(bad) or 'none'} |"
        )
    report.add("Imports (`python -X importtime`, one run each):\n\n" + "\n".join(rows) + "\n")
    report.target(
        "c",
        "no HTTP or image library for --version, --help, presets, info IMAGE",
        "none" if clean else "some",
        clean,
    )


def figure_c(ctx: Context, rounds: int, report: Report) -> None:
    """Start-up: `sdcli --version` and `--help` against a process that only imports requests."""

    def timed(argv: list[str]) -> Callable[[], Run]:
        return lambda: check(run_child(argv, ctx.env), " ".join(argv[-2:]))

    contenders = [
        ("`sdcli --version`", timed([SDCLI, "--version"])),
        ("`sdcli --help`", timed([SDCLI, "--help"])),
        ('`python -c "import requests"`', timed([PYTHON, "-c", "import requests"])),
        ('`python -c "pass"`', timed([PYTHON, "-c", "pass"])),
    ]
    wall = series(contenders, alternate(rounds, contenders, "c"), lambda r: r.seconds)
    report.add(f"### c. Start-up ({rounds} rounds)\n\n" + table(wall, "s", wall[2]) + "\n")
    ratio = wall[0].median / wall[2].median
    report.target("c", "`sdcli --version` ≤ 0.5× `import requests`", f"{ratio:.2f}×", ratio <= 0.5)
    import_check(ctx, report)


def figure_d(ctx: Context, rounds: int, batch: int, report: Report) -> None:
    """Peak memory (the child's ru_maxrss) for one request returning a batch of images."""
    decoded: list[int] = []

    def sdcli() -> Run:
        out = ctx.fresh_dir()
        argv = ctx.sdcli_generate(out, "--batch-size", str(batch), SEED_PROMPT)
        run = check(run_child(argv, ctx.env, memory=True), "sdcli generate --batch-size")
        decoded.append(pngs_in(out, batch, "sdcli generate --batch-size"))
        shutil.rmtree(out)
        return run

    def floor(out: Path) -> list[str]:
        return ctx.floor(out, SEED_PROMPT, batch_size=batch)

    contenders = [
        (f"sdcli generate, batch of {batch}", sdcli),
        (f"floor, batch of {batch}", in_fresh_dir(ctx, floor, batch, "floor", memory=True)),
        (
            "`sdcli --help` (no image at all)",
            lambda: check(run_child([SDCLI, "--help"], ctx.env, memory=True), "--help"),
        ),
    ]
    peak = series(contenders, alternate(rounds, contenders, "d"), lambda r: r.maxrss / MB)
    png_bytes = statistics.median(decoded)
    raster = batch * ctx.size * ctx.size * 3
    limit = 3 * png_bytes / MB + 60
    report.add(
        f"### d. Peak memory, {batch} images of {ctx.size}×{ctx.size} in one answer "
        f"({rounds} rounds)\n\n"
        + table(peak, "MB", peak[1])
        + f"\n\nDecoded image bytes (the PNG files as written): {png_bytes / MB:.1f} MB "
        f"({png_bytes / batch / MB:.2f} MB an image); as RGB pixels they would be "
        f"{raster / MB:.1f} MB. Limit: 3 × {png_bytes / MB:.1f} + 60 = {limit:.1f} MB.\n"
    )
    report.target(
        "d",
        "peak ≤ 3× the decoded image bytes + 60 MB",
        f"{peak[0].median:.1f} MB (limit {limit:.1f} MB)",
        peak[0].median <= limit,
    )


def _drain(fd: int, sink: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the child closed its end
            return
        if not chunk:
            return
        sink.extend(chunk)


@contextlib.contextmanager
def pseudo_terminal() -> Iterator[tuple[int, bytearray]]:
    """A pty 100 columns wide; yields the child's end and what the child drew on it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    drawn = bytearray()
    reader = threading.Thread(target=_drain, args=(master, drawn), daemon=True)
    reader.start()
    try:
        yield slave, drawn
    finally:
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)


def _watch_job(fake: FakeWebUI, span: dict[str, float]) -> None:
    """The job's duration as the server saw it: from its start until the fake is idle again."""
    if fake.job_started.wait(60):
        span["start"] = time.monotonic()
        fake.wait_idle(120)
        span["end"] = time.monotonic()


def figure_e(ctx: Context, rounds: int, step_delay: float, report: Report) -> None:
    """Progress requests a second while the bar runs: sdcli's stderr is a pseudo-terminal."""
    rows = ["| run | job (s) | /internal/progress | /sdapi/v1/progress | polls/s |"]
    rows.append("| ---: | ---: | ---: | ---: | ---: |")
    rates = []
    env = {**ctx.env, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    ctx.fake.step_delay = step_delay
    try:
        for r in range(rounds):
            out = ctx.fresh_dir()
            ctx.fake.wait_idle(10)
            ctx.fake.clear_requests()
            ctx.fake.job_started.clear()
            span: dict[str, float] = {}
            watcher = threading.Thread(target=_watch_job, args=(ctx.fake, span), daemon=True)
            watcher.start()
            with pseudo_terminal() as (tty, drawn):
                run = run_child(ctx.sdcli_generate(out, SEED_PROMPT), env, stderr_fd=tty)
            watcher.join(10)
            check(run, "sdcli generate on a pty")
            pngs_in(out, 1, "sdcli generate on a pty")
            shutil.rmtree(out)
            if "end" not in span:
                raise SystemExit("bench: the fake never reported the job's start and end")
            if b"step" not in drawn:
                raise SystemExit("bench: no progress bar was drawn on the pseudo-terminal")
            seconds = span["end"] - span["start"]
            counts = [len(ctx.fake.requests_to(path)) for path in POLL_PATHS]
            rate = sum(counts) / seconds
            rates.append(rate)
            rows.append(f"| {r + 1} | {seconds:.2f} | {counts[0]} | {counts[1]} | {rate:.2f} |")
    finally:
        ctx.fake.step_delay = 0.0
    median = statistics.median(rates)
    report.add(
        f"### e. Progress polling ({rounds} runs, {ctx.steps} steps × {step_delay:g} s a step, "
        "stderr on a pseudo-terminal)\n\n" + "\n".join(rows) + "\n"
    )
    report.target("e", "≤ 4 progress requests a second", f"{median:.2f}/s", median <= 4)


def figure_f(ctx: Context, rounds: int, count: int, report: Report) -> None:
    """Thumbnails: `sdcli generate -` with stderr on a pseudo-terminal, pictures on and off."""
    lines = ("\n".join(prompts(count)) + "\n").encode()
    env = {**ctx.env, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)

    def on_a_terminal(mark: bytes, *extra: str, mode: str = "blocks") -> Callable[[], Run]:
        def contender() -> Run:
            out = ctx.fresh_dir()
            with pseudo_terminal() as (tty, drawn):
                argv = [*ctx.sdcli_generate(out), "--no-preview", *extra, "-"]
                run_env = {**env, "SDCLI_IMAGES": mode}
                run = check(run_child(argv, run_env, cwd=out, stdin=lines, stderr_fd=tty), "f")
            pngs_in(out, count, "sdcli generate on a pty")
            shutil.rmtree(out)
            if (mark in drawn) == ("--no-show" in extra):
                raise SystemExit(f"bench: thumbnails {'drawn' if extra else 'missing'} in f")
            return run

        return contender

    blocks, kitty, iterm = "▀".encode(), b"\x1b_Ga=T", b"\x1b]1337;File="
    contenders = [
        (f"`--no-show`, {count} prompts", on_a_terminal(blocks, "--no-show")),
        (f"thumbnails in half-blocks, {count} prompts", on_a_terminal(blocks)),
        (f"thumbnails for Kitty, {count} prompts", on_a_terminal(kitty, mode="kitty")),
        (f"thumbnails for iTerm2, {count} prompts", on_a_terminal(iterm, mode="iterm")),
    ]
    runs = alternate(rounds, contenders, "f")
    cpu = series(contenders, runs, lambda r: r.cpu / count)
    wall = series(contenders, runs, lambda r: r.seconds / count)
    report.add(
        f"### f. Thumbnails after each image ({rounds} rounds, {count} prompts, stderr on a "
        "pseudo-terminal)\n\nPer image: CPU time of the client ÷ prompts:\n\n"
        + table(cpu, "ms", cpu[0], scale=1000)
        + "\n\nPer image: wall time ÷ prompts:\n\n"
        + table(wall, "ms", wall[0], scale=1000)
        + "\n"
    )
    for i, name in ((1, "half-blocks"), (2, "Kitty"), (3, "iTerm2")):
        ratio = cpu[i].median / cpu[0].median
        report.target(
            "f",
            f"thumbnails ({name}) cost ≤ 5 % more client CPU an image",
            f"{ratio:.3f}×",
            ratio <= 1.05,
        )


def generate_imports(ctx: Context, report: Report, runs: int = 5, top: int = 15) -> None:
    """`python -X importtime` of a warm `sdcli generate` (one image, the cache filled): the
    modules with the largest cumulative import time, medians over `runs` runs."""
    home = ctx.tmp / "home-importtime"
    cumulative: dict[str, list[int]] = {}
    self_us: dict[str, list[int]] = {}
    for i in range(runs + 1):  # the first run fills the cache and is not counted
        out = ctx.fresh_dir()
        argv = [PYTHON, "-X", "importtime", SDCLI, *ctx.sdcli_generate(out, SEED_PROMPT)[1:]]
        run = check(run_child(argv, {**ctx.env, "SDCLI_HOME": str(home)}), "importtime")
        shutil.rmtree(out)
        if i == 0:
            continue
        for line in run.stderr.decode(errors="replace").splitlines():
            if not line.startswith("import time:") or "imported package" in line:
                continue
            own, cum, name = line[len("import time:") :].split("|")
            cumulative.setdefault(name.rstrip(), []).append(int(cum))
            self_us.setdefault(name.strip(), []).append(int(own))
    rows = ["| module (indented: imported by the one above) | cumulative (ms) | self (ms) |"]
    rows.append("| --- | ---: | ---: |")
    ranked = sorted(cumulative, key=lambda n: -statistics.median(cumulative[n]))[:top]
    for name in ranked:
        shown = name.replace(" ", "\u00a0")  # keep the indentation in markdown
        own_ms = statistics.median(self_us[name.strip()]) / 1000
        cum_ms = statistics.median(cumulative[name]) / 1000
        rows.append(f"| `{shown}` | {cum_ms:.1f} | {own_ms:.1f} |")
    total = sum(statistics.median(v) for v in self_us.values()) / 1000
    sdcli_own = (
        sum(statistics.median(v) for n, v in self_us.items() if n.startswith("sdcli")) / 1000
    )
    report.add(
        f"Imports of a warm `sdcli generate` (`python -X importtime`, medians of {runs} runs): "
        f"{len(self_us)} modules, {total:.0f} ms in all, {sdcli_own:.0f} ms in sdcli's own.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def figure_l(ctx: Context, rounds: int, delay: float, report: Report) -> None:
    """Issue 18: one image as a whole process, with and without `delay` added to every request
    (bench/delay_proxy.py): the floor, the seed's method, sdcli with a cold and a warm cache."""

    def seed(out: Path) -> list[str]:
        (out / "result").mkdir()
        return [PYTHON, str(BENCH / "seed_method.py")]

    counter = {"cold": 0}

    def contenders_for(url: str, label: str) -> list[tuple[str, Callable[[], Run]]]:
        env = {**ctx.env, "SDCLI_URL": url, "SEED_URL": url}
        warm_env = {**env, "SDCLI_HOME": str(ctx.tmp / f"home-warm-{label}")}

        def cold() -> Run:
            counter["cold"] += 1  # a cache dir nobody wrote yet: the lists are asked
            home = ctx.tmp / f"home-cold-{counter['cold']}"
            out = ctx.fresh_dir()
            argv = ctx.sdcli_generate(out, SEED_PROMPT)
            run = check(run_child(argv, {**env, "SDCLI_HOME": str(home)}, cwd=out), "cold")
            pngs_in(out, 1, "sdcli, cold cache")
            shutil.rmtree(out)
            shutil.rmtree(home)
            return run

        def with_env(argv: Callable[[Path], list[str]], e: dict[str, str], what: str) -> Any:
            def contender() -> Run:
                out = ctx.fresh_dir()
                run = check(run_child(argv(out), e, cwd=out), what)
                pngs_in(out, 1, what)
                shutil.rmtree(out)
                return run

            return contender

        def floor(out: Path) -> list[str]:
            argv = ctx.floor(out, SEED_PROMPT)
            argv[2] = url  # floor.py URL OUT PAYLOAD PROMPT
            return argv

        def floor_typer(out: Path) -> list[str]:
            argv = floor(out)
            argv[1] = str(BENCH / "floor_typer.py")
            return argv

        return [
            (f"floor{label}", with_env(floor, env, "the floor")),
            (f"seed's method{label}", with_env(seed, env, "the seed's method")),
            (f"sdcli, cold cache{label}", cold),
            (
                f"sdcli, warm cache{label}",
                with_env(lambda o: ctx.sdcli_generate(o, SEED_PROMPT), warm_env, "sdcli warm"),
            ),
            *(
                [(f"floor + import typer{label}", with_env(floor_typer, env, "floor + typer"))]
                if not label  # the reference is about start-up, not latency
                else []
            ),
        ]

    ms = f"{delay * 1000:g} ms"
    generate_imports(ctx, report)
    with DelayProxy(ctx.url, delay) as proxy:
        direct = contenders_for(ctx.url, "")
        far = contenders_for(proxy.url, f", +{ms}")
        contenders = direct + far
        runs = alternate(rounds, contenders, "l")
        wall = series(contenders, runs, lambda r: r.seconds)
        # requests per run, counted at the proxy: one run of each, after the figure
        counts = []
        for name, fn in far:
            before = proxy.requests
            fn()
            counts.append(f"{name.removesuffix(f', +{ms}')}: {proxy.requests - before}")
    near, away = wall[: len(direct)], wall[len(direct) :]
    report.add(
        f"### l. One {ctx.size}×{ctx.size} image over a server {ms} away ({rounds} rounds)\n\n"
        f"Every contender run in turn, each round in a new order; `+{ms}`: through "
        f"bench/delay_proxy.py, which holds every request {ms} before forwarding it.\n\n"
        "Wall time, no added latency:\n\n"
        + table(near, "s", near[0])
        + f"\n\nWall time, +{ms} a request:\n\n"
        + table(away, "s", away[0])
        + "\n\nRequests a run (at the proxy): "
        + "; ".join(counts)
        + "\n"
    )
    # the targets compare contenders round by round (each round runs them all within a second
    # or two), then take the median: a slow moment of the machine falls on both sides of a pair
    warm = paired(near[3], near[0], operator.truediv)
    cold = paired(near[2], near[0], operator.truediv)
    extra = paired(away[3], away[0], operator.sub)
    parser = paired(near[4], near[0], operator.truediv)
    report.add(
        "Targets from round-by-round pairs (the median of each round's ratio or difference). "
        f"The floor with `import typer` added (the card's parser, before any sdcli code): "
        f"{parser:.2f}× the floor; warm sdcli is {paired(near[3], near[4], operator.truediv):.2f}× "
        "that.\n"
    )
    report.target("l", "warm sdcli ≤ 1.10× the floor", f"{warm:.2f}×", warm <= 1.10)
    report.target("l", "cold sdcli ≤ 1.25× the floor", f"{cold:.2f}×", cold <= 1.25)
    report.target(
        "l",
        f"warm sdcli within one round trip ({ms}) of the floor, +{ms} a request",
        f"+{extra * 1000:.0f} ms",
        extra <= delay,
    )


# --- the machine and the run --------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("typer", "requests", "urllib3", "rich", "Pillow")
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}\n"
        f"- CPU: {cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}\n"
        f"- Python {platform.python_version()} ({PYTHON})\n"
        f"- {versions}\n"
        f"- Load average at the start: {load}\n"
    )


FIGURES = "abcdefl"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=FIGURES, help="figures to run, e.g. 'a,c' (default: all)")
    p.add_argument("--rounds", type=int, default=10, help="rounds for a (default 10)")
    p.add_argument("--batch-rounds", type=int, default=3, help="rounds for b (default 3)")
    p.add_argument("--prompts", type=int, default=50, help="prompts in b (default 50)")
    p.add_argument("--startup-rounds", type=int, default=15, help="rounds for c (default 15)")
    p.add_argument("--memory-rounds", type=int, default=3, help="rounds for d (default 3)")
    p.add_argument("--memory-batch", type=int, default=8, help="images in d (default 8)")
    p.add_argument("--poll-runs", type=int, default=2, help="runs for e (default 2)")
    p.add_argument(
        "--step-delay", type=float, default=0.1, help="seconds a step in e (default 0.1)"
    )
    p.add_argument("--thumb-rounds", type=int, default=3, help="rounds for f (default 3)")
    p.add_argument("--thumb-prompts", type=int, default=20, help="prompts in f (default 20)")
    p.add_argument("--delay", type=float, default=0.05, help="seconds added in l (default 0.05)")
    p.add_argument("--latency-rounds", type=int, default=10, help="rounds for l (default 10)")
    p.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    p.add_argument("--steps", type=int, default=27, help="sampling steps (default 27, the seed's)")
    p.add_argument("--no-compile", action="store_true", help="skip compileall")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = {c for c in args.only if c in FIGURES}
    if not Path(SDCLI).exists():
        raise SystemExit(f"bench: no {SDCLI}: run this with the interpreter of sdcli's venv")
    report = Report()
    started = time.monotonic()
    header = machine()
    with tempfile.TemporaryDirectory(prefix="sdcli-bench-") as tmp, FakeWebUI(port=0) as fake:
        env = child_env(fake.url, Path(tmp))
        env["SEED_MODEL"] = fake.current_model  # the switch is a no-op, as with the model loaded
        env["SEED_SIZE"] = str(args.size)
        if not args.no_compile:
            print("compiling bytecode (compileall)…", file=sys.stderr, flush=True)
            compile_bytecode(env)
        ctx = Context(fake, Path(tmp), env, args.size, args.steps)
        report.add(f"## sdcli benchmark\n\n{header}")
        if "a" in only:
            figure_a(ctx, args.rounds, report)
        if "b" in only:
            figure_b(ctx, args.batch_rounds, args.prompts, report)
        if "c" in only:
            figure_c(ctx, args.startup_rounds, report)
        if "d" in only:
            figure_d(ctx, args.memory_rounds, args.memory_batch, report)
        if "e" in only:
            figure_e(ctx, args.poll_runs, args.step_delay, report)
        if "f" in only:
            figure_f(ctx, args.thumb_rounds, args.thumb_prompts, report)
        if "l" in only:
            figure_l(ctx, args.latency_rounds, args.delay, report)
    rows = ["| figure | target | measured | result |", "| --- | --- | --- | --- |"]
    for t in report.targets:
        rows.append(f"| {t.figure} | {t.text} | {t.measured} | {'pass' if t.ok else 'FAIL'} |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report.add(
        "### Targets\n\n"
        + "\n".join(rows)
        + f"\n\nTotal time {time.monotonic() - started:.0f} s; load average at the end: {load}.\n"
    )
    if args.markdown:
        args.markdown.write_text("\n".join(report.sections))
    return 0 if all(t.ok for t in report.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
