"""A stdlib fake of the Stable Diffusion web UI API, faithful to captures of a live v1.10.1.

Used by the end-to-end tests over loopback HTTP, by the benchmarks, and by anyone who wants to
try sdcli without a GPU: `python -m sdcli.testing.fake_webui --port 7860`. It only ever binds
127.0.0.1. Flavours (A1111 1.10 UI or API-only, 1.8, Forge, SD.Next) are in fake_profiles.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from sdcli.testing.fake_data import find_checkpoint
from sdcli.testing.fake_engine import Engine, Stopping
from sdcli.testing.fake_failures import FailureMode, Failures
from sdcli.testing.fake_http import HOST, NO_BODY, Call, Reply, Server
from sdcli.testing.fake_profiles import PROFILES, Profile, get_profile
from sdcli.testing.fake_routes import Api

__all__ = ["PROFILES", "FailureMode", "FakeWebUI", "Profile", "RecordedRequest", "main"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; header names are lower-cased, `json` is None
    when the body was empty or not JSON."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    raw: bytes


class FakeWebUI:
    """A running fake server; see the module docstring and each method for the hooks tests use."""

    def __init__(
        self,
        profile: str = "a1111",
        auth: tuple[str, str] | Mapping[str, str] | None = None,
        step_delay: float = 0.0,
        port: int = 0,
        png_parameters: bool = True,
        *,
        model_load_delay: float = 0.0,
        gzip_responses: bool = True,
        config_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`config_options`: what the server's config.json holds at start-up, besides the
        checkpoint (held keys are restored after an override; others leak, as on the real one)."""
        self.profile = get_profile(profile)
        credentials = dict([auth]) if isinstance(auth, tuple) else auth
        self.png_parameters = png_parameters
        self.gzip_responses = gzip_responses
        self._engine = Engine(
            self.profile,
            step_delay=step_delay,
            model_load_delay=model_load_delay,
            config_options=config_options,
        )
        self._api = Api(
            self._engine,
            credentials=credentials,
            port=lambda: self.port,
            png_parameters=lambda: self.png_parameters,
        )
        self._failures = Failures(self._engine, self._api)
        self._requested_port = port
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeWebUI:
        """Bind 127.0.0.1 (port 0: any free port) and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the fake web UI is already running")
        with self._engine.cv:
            self._engine.stopping = False
        self._server = Server(
            self._requested_port,
            self._app,
            self._record,
            gzip_responses=lambda: self.gzip_responses,
            process_time_header=self.profile.process_time_header,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.005,), name="fake-webui", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: release hung and paused requests, close every connection, join threads."""
        server = self._server
        if server is None:
            return
        with self._engine.cv:
            self._engine.stopping = True
            self._engine.cv.notify_all()
        server.shutdown()
        server.server_close()
        server.close_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeWebUI:
        return self if self._server is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake web UI is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` once started."""
        return f"http://{HOST}:{self.port}"

    # --- what the server saw ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Only the requests for one path, e.g. "/sdapi/v1/txt2img"."""
        return [r for r in self.requests if r.path == path]

    def wait_for_request(self, path: str, count: int = 1, timeout: float = 5) -> bool:
        """True once `count` requests to `path` have arrived (answered or not)."""
        with self._lock:
            return self._lock.wait_for(
                lambda: sum(1 for r in self._requests if r.path == path) >= count, timeout
            )

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- failure injection -----------------------------------------------------------------

    def fail(
        self,
        path: str,
        status: int = 500,
        body: Any = None,
        *,
        times: int | None = 1,
        mode: FailureMode = "status",
    ) -> None:
        """Make the next `times` calls to `path` fail (None: until clear_failures()).

        Modes: "status" (status + body; default body: this flavour's error shape), "html" (a
        502 nginx page), "malformed" (200, JSON cut in half), "close" (connection dropped),
        "hang" (no answer until release_hangs() or stop()), "hold" (answered as usual once
        release_hangs() is called: a slow server), "bad_image" (images[0] not base64),
        "not_png" (images[0] is a JPEG), "empty_images" (images: []).
        """
        self._failures.add(path, status, body, times, mode)

    def clear_failures(self) -> None:
        self._failures.clear()

    def release_hangs(self) -> None:
        """Let requests held by a "hang" failure go (their connections close unanswered), and
        those held by a "hold" failure be answered."""
        self._failures.release_hangs()

    def fail_next_model_load(self) -> None:
        """The next checkpoint load from POST /options fails: 200 null, the option reverts."""
        with self._engine.cv:
            self._engine.fail_next_load = True

    def remove_interrogator_weights(self) -> None:
        """/interrogate as on a server that never downloaded CLIP's BLIP or DeepDanbooru."""
        with self._engine.cv:
            self._engine.interrogator_weights = False

    def serve_list(self, name: str, body: Any) -> None:
        """GET /sdapi/v1/NAME (loras, sd-vae, prompt-styles, embeddings...) answers `body`."""
        with self._engine.cv:
            self._engine.lists[name] = body

    def rename_sampler(self, old: str, new: str) -> None:
        """A sampler renamed on the server (an update or an extension): lists and jobs see `new`,
        and `old` is unknown from now on (1.10.1 falls back to its first sampler)."""
        with self._engine.cv:
            for sampler in self._engine.samplers:
                if sampler["name"] == old:
                    sampler["name"] = new
                    return
        raise ValueError(f"no sampler is called {old!r}")

    def remove_checkpoint(self, alias: str) -> None:
        """A machine without that checkpoint file: gone from the list (never the loaded one)."""
        with self._engine.cv:
            model = find_checkpoint(self._engine.models, alias)
            if model is None or model is self._engine.loaded:
                raise ValueError(f"no checkpoint to remove answers to {alias!r}")
            self._engine.models.remove(model)

    def move_checkpoint(self, alias: str, name: str) -> None:
        """The same file in another folder on this machine (`sub/x.safetensors`): another
        title, the same hash; as after a refresh of the checkpoints."""
        with self._engine.cv:
            model = find_checkpoint(self._engine.models, alias)
            if model is None:
                raise ValueError(f"no checkpoint answers to {alias!r}")
            model.name = name

    # --- server state ----------------------------------------------------------------------

    @property
    def step_delay(self) -> float:
        return self._engine.step_delay

    @step_delay.setter
    def step_delay(self, seconds: float) -> None:
        with self._engine.cv:
            self._engine.step_delay = seconds

    @property
    def model_load_delay(self) -> float:
        return self._engine.model_load_delay

    @model_load_delay.setter
    def model_load_delay(self, seconds: float) -> None:
        with self._engine.cv:
            self._engine.model_load_delay = seconds

    @property
    def options(self) -> dict[str, Any]:
        """The live option values (GET /options shows them after its type coercion)."""
        return self._engine.options

    @property
    def current_model(self) -> str:
        """Title of the checkpoint whose weights are loaded."""
        with self._engine.cv:
            return self._engine.loaded.title

    @current_model.setter
    def current_model(self, alias: str) -> None:
        with self._engine.cv:
            model = find_checkpoint(self._engine.models, alias)
            if model is None:
                raise ValueError(f"no checkpoint answers to {alias!r}")
            model.hashed = True
            self._engine.loaded = model
            self._engine.options["sd_model_checkpoint"] = model.title
            self._engine.options["sd_checkpoint_hash"] = model.sha256

    @property
    def job_started(self) -> threading.Event:
        """Set when a generation job begins; never cleared by the fake (tests may .clear())."""
        return self._engine.job_started

    def pause_at_step(self, step: int, *, after_jobs: int = 0) -> None:
        """The next job (or the one after `after_jobs` more) blocks on reaching sampling step
        `step`, until resume().

        0 is before the first step (progress 0.01, job_count set); -1 is earlier still, while
        job_count is -1. An interrupt, a skip or stop() also release the job.
        """
        self._engine.arm_pause(step, after_jobs)

    def wait_paused(self, timeout: float = 5) -> bool:
        """True once a job is blocked at the pause point."""
        with self._engine.cv:
            return self._engine.cv.wait_for(lambda: self._engine.paused, timeout)

    def resume(self) -> None:
        """Release a paused job (and disarm a pause no job has reached yet)."""
        self._engine.resume()

    def wait_queued(self, count: int = 1, timeout: float = 5) -> bool:
        """True once at least `count` requests wait for the queue lock behind a running one."""
        with self._engine.cv:
            return self._engine.cv.wait_for(lambda: self._engine.waiting() >= count, timeout)

    def wait_idle(self, timeout: float = 5) -> bool:
        """True once no job runs and none waits for the queue."""
        with self._engine.cv:
            return self._engine.cv.wait_for(self._engine.idle, timeout)

    # --- request plumbing (called from handler threads) ------------------------------------

    def _record(self, call: Call) -> None:
        body = None if call.body is NO_BODY else call.body
        entry = RecordedRequest(call.method, call.path, call.query, call.headers, body, call.raw)
        with self._lock:
            self._requests.append(entry)
            self._lock.notify_all()

    def _app(self, call: Call) -> Reply | None:
        try:
            return self._failures.respond(call, self._api.handle)
        except Stopping:
            return None
        except Exception as exc:  # a bug in the fake: answer like the web UI's exception handler
            traceback.print_exc()
            return self._api.crash(type(exc).__name__, str(exc))


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; print the URL on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m sdcli.testing.fake_webui",
        description="A fake Stable Diffusion web UI API on 127.0.0.1: try sdcli without a GPU.",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="port on 127.0.0.1; 0 picks a free one (default: 7860, or 7861 for a1111-nowebui)",
    )
    parser.add_argument(
        "--profile", default="a1111", choices=sorted(PROFILES), help="server flavour"
    )
    parser.add_argument("--step-delay", type=float, default=0.05, help="seconds per sampling step")
    parser.add_argument(
        "--api-auth", metavar="USER:PASS[,USER:PASS]", help="require HTTP Basic auth"
    )
    parser.add_argument(
        "--no-png-parameters",
        action="store_true",
        help="write PNGs without the `parameters` text chunk",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="run in the background: return once it listens, printing its PID on stdout "
        "(stop it with: kill PID)",
    )
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.detach:
        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--detach"]
        return _detach(rest)
    auth = None
    if args.api_auth:
        pairs = [item.split(":", 1) for item in args.api_auth.split(",")]
        if any(len(pair) != 2 for pair in pairs):
            parser.error("--api-auth takes USER:PASS pairs separated by commas")
        auth = {user: password for user, password in pairs}
    port = get_profile(args.profile).default_port if args.port is None else args.port
    fake = FakeWebUI(
        args.profile,
        auth=auth,
        step_delay=args.step_delay,
        port=port,
        png_parameters=not args.no_png_parameters,
    )
    try:
        fake.start()
    except OSError as exc:
        sys.stderr.write(f"fake web UI: cannot listen on {HOST}:{port}: {exc.strerror}\n")
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    sys.stderr.write(f"fake web UI ({fake.profile.description}) listening on {fake.url}\n")
    sys.stderr.flush()
    if args.background:  # the --detach parent has read that line and is gone: nobody reads on
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())
        os.close(devnull)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


def _detach(argv: list[str]) -> int:
    """Start the fake as a process of its own and return as soon as it listens (no `sleep`
    to guess when it is ready); its PID goes to stdout, the address to stderr."""
    child = subprocess.Popen(
        [sys.executable, "-m", "sdcli.testing.fake_webui", *argv, "--background"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C in this terminal is not meant for it; `kill PID` is
    )
    assert child.stderr is not None
    line = child.stderr.readline().rstrip("\n")
    child.stderr.close()
    if "listening on" not in line:
        child.wait()
        sys.stderr.write((line or "fake web UI: could not start") + "\n")
        return child.returncode or 1
    sys.stderr.write(f"{line}, pid {child.pid} (stop it with: kill {child.pid})\n")
    sys.stdout.write(f"{child.pid}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
