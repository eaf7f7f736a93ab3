"""Ways to run sdcli in tests, and what to read from them: a real process (the scripting
contract), a process a test talks to while it runs, the Typer app in process, or the core's
run_job in a thread with a sink that records what it is told."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from typer.testing import CliRunner

if TYPE_CHECKING:
    from sdcli.events import Event, ProgressSnapshot
    from sdcli.run import RunSummary
    from sdcli.save import SavedImage
    from sdcli.testing.fake_webui import FakeWebUI

ANSI = "\x1b["
SDCLI = (sys.executable, "-m", "sdcli")


def _env(env: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}


def run_sdcli(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Any = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m sdcli ARGS` with pipes for stdin/stdout/stderr (so nothing is a TTY)."""
    return subprocess.run(
        [*SDCLI, *args],
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_env(env),
        cwd=cwd,
        timeout=120,  # a safety net against a hung test, not a timing assertion
        check=False,
    )


_LOADED = (
    "import runpy, sys\n"
    "sys.argv = ['sdcli', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('sdcli', run_name='__main__')\n"
    "finally:\n"
    "    sys.stderr.write('\\nLOADED=' + ' '.join(sorted(sys.modules)) + '\\n')\n"
)


def loaded_by(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`sdcli ARGS` in a new interpreter (pipes, so no terminal; its exit code kept) and every
    module it had loaded when it ended: what start-up costs a command."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *args],
        capture_output=True,
        text=True,
        env=_env(None) if env is None else env,
        timeout=120,  # a safety net against a hung test, not a timing assertion
        check=False,
    )
    return done, set(done.stderr.rpartition("LOADED=")[2].split())


def start_sdcli(
    *args: str, env: dict[str, str] | None = None, stdin: int | IO[Any] = subprocess.PIPE
) -> subprocess.Popen[str]:
    """A real sdcli process with text pipes on stdout and stderr, left running."""
    return subprocess.Popen(
        [*SDCLI, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=_env(env),
    )


class SdcliProcess:
    """A real sdcli process with pipes, so a signal reaches it as from a terminal; `send` feeds
    `generate -` one prompt at a time."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, stdin: int = subprocess.PIPE
    ) -> None:
        self.proc = start_sdcli(*args, env=env, stdin=stdin)

    def send(self, *prompts: str) -> None:
        assert self.proc.stdin is not None
        for prompt in prompts:
            self.proc.stdin.write(prompt + "\n")
        self.proc.stdin.flush()

    def read_stdout(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.endswith("\n"), "sdcli closed stdout early"
        return line[:-1]

    def read_stderr(self) -> str:
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert line.endswith("\n"), "sdcli closed stderr early"
        return line[:-1]

    def finish(self, *prompts: str) -> tuple[int, str, str]:
        """Send the last prompts (if stdin is a pipe), close stdin, wait for the exit."""
        text = "".join(prompt + "\n" for prompt in prompts) if self.proc.stdin else None
        out, err = self.proc.communicate(text, timeout=120)  # a safety net, not a timing test
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run_side_by_side(
    runs: list[tuple[tuple[str, ...], dict[str, str]]],
) -> list[subprocess.CompletedProcess[str]]:
    """Independent sdcli processes, run at the same time to keep the suite quick."""
    procs = [start_sdcli(*args, env=env, stdin=subprocess.DEVNULL) for args, env in runs]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)  # a safety net, not a timing assertion
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def invoke(args: Sequence[str], input: str | bytes | None = None) -> Any:
    """Run the Typer app in-process; `.stdout` and `.stderr` are kept apart."""
    from sdcli.cli.app import app

    return CliRunner().invoke(app, list(args), input=input)


def sdcli(server: FakeWebUI | str, *args: str, input: str | bytes | None = None) -> Any:
    """`sdcli --url SERVER ARGS` in process; SERVER is a fake or a URL."""
    url = server if isinstance(server, str) else server.url
    return invoke(["--url", url, *args], input=input)


def generate(
    server: FakeWebUI | str, out: Path, *args: str, input: str | bytes | None = None
) -> Any:
    """`sdcli --url SERVER generate ARGS -o OUT` in process."""
    return sdcli(server, "generate", *args, "-o", str(out), input=input)


def error_line(stderr: str, *, alone: bool = False) -> str:
    """The one `sdcli: error:` line, never a traceback nor "a bug in sdcli". Other lines (a
    summary, warnings) may stand around it, unless `alone`: then it is the first line and only a
    TOML error's quoted line and caret may follow it."""
    assert "Traceback" not in stderr and "a bug in sdcli" not in stderr, stderr
    if not alone:
        errors = [line for line in stderr.splitlines() if line.startswith("sdcli: error:")]
        assert len(errors) == 1, stderr
        return errors[0]
    first, *context = stderr.splitlines()
    assert first.startswith("sdcli: error:"), stderr
    assert not context or ("invalid TOML" in first and len(context) == 2), stderr
    assert all(line.startswith("  ") and " | " in line for line in context), stderr
    return first


def warnings(stderr: str) -> list[str]:
    """The `sdcli: warning:` lines."""
    return [line for line in stderr.splitlines() if line.startswith("sdcli: warning:")]


class Recorder:
    """A sink that keeps the snapshots and images it is told of; `seen` is set at the first
    snapshot `until` accepts."""

    def __init__(self, until: Callable[[ProgressSnapshot], bool]) -> None:
        self.snapshots: list[ProgressSnapshot] = []
        self.saved: list[SavedImage] = []
        self.seen = threading.Event()
        self.until = until

    def __call__(self, event: Event) -> None:
        from sdcli.events import ImageSaved, Progressed

        if isinstance(event, Progressed):
            self.snapshots.append(event.snapshot)
            if self.until(event.snapshot):
                self.seen.set()
        elif isinstance(event, ImageSaved):
            self.saved.append(event.image)


def start_run(
    fake: FakeWebUI, sink: Callable[[Event], None], out: Path, **values: object
) -> tuple[threading.Thread, list[RunSummary]]:
    """run_job of one prompt (6 steps of 64x64 unless `values` say otherwise) in a thread, with
    progress polled every 20 ms; the summary lands in the list once the thread ends."""
    from sdcli.client import WebUIClient
    from sdcli.job import Job
    from sdcli.run import Runner, run_job

    job = Job(
        mode="txt2img",
        values={"steps": 6, "width": 64, "height": 64, **values},
        sets={},
        prompts=["a cat"],
        output_dir=out,
        name_template="{index}",
    )
    summaries: list[RunSummary] = []
    client = WebUIClient(fake.url, timeout=30)
    runner = Runner(client, sink, poll_interval=0.02)

    def target() -> None:
        try:
            summaries.append(run_job(job, runner))
        finally:
            client.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, summaries
