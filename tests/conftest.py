"""Fixtures for every test: an isolated sdcli home, the fake web UI on an ephemeral port, a port
nobody listens on, and real sdcli processes that are killed when the test ends."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import SdcliProcess


def pytest_configure(config: pytest.Config) -> None:
    """sdcli runs here as a person starts it: with Ctrl-C and Ctrl-\\ working. A test run
    started in the background of a script (`pytest &`, a job runner) has SIGINT and SIGQUIT
    ignored, and every sdcli it starts would inherit that: a Ctrl-C test would then wait for
    an sdcli that never hears it. An interactive shell resets both for what it runs; so does
    this, once, for every process the tests start."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


_CLEARED_ENV = (
    "SDCLI_URL",
    "SDCLI_AUTH",
    "SDCLI_TIMEOUT",
    "SDCLI_OUTPUT_DIR",
    "SDCLI_PRESETS_PATH",
    "SDCLI_PRESET",
    "SDCLI_DEBUG",
    "VISUAL",  # the user's own $VISUAL would win over the $EDITOR tests set
    "SDCLI_IMAGES",
    # what picks the way pictures are drawn: tests choose their terminal themselves
    "TMUX",
    "TERM_PROGRAM",
    "KITTY_WINDOW_ID",
    "KITTY_PID",
    "LC_TERMINAL",
)


@pytest.fixture(autouse=True)
def isolated_sdcli_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Never read or write the real user's settings, presets or environment."""
    home = tmp_path_factory.mktemp("sdcli-home")
    monkeypatch.setenv("SDCLI_HOME", str(home))
    monkeypatch.setenv("SDCLI_CONFIG", str(home / "config.toml"))
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def make_fake_webui() -> Iterator[Callable[..., FakeWebUI]]:
    """Start fakes with custom settings (`profile=`, `auth=`, ...); all are stopped afterwards."""
    started: list[FakeWebUI] = []

    def make(**kwargs: Any) -> FakeWebUI:
        fake = FakeWebUI(**kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def fake_webui(make_fake_webui: Callable[..., FakeWebUI]) -> FakeWebUI:
    """A running A1111 v1.10.1 fake (UI mode, no auth, instant steps) on an ephemeral port."""
    return make_fake_webui()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def dead_url(closed_port: int) -> str:
    """The URL of `closed_port`: a server that is down."""
    return f"http://127.0.0.1:{closed_port}"


@pytest.fixture
def spawn_sdcli() -> Iterator[Callable[..., SdcliProcess]]:
    """Start real sdcli processes; any still running when the test ends is killed (by its pid)."""
    started: list[SdcliProcess] = []

    def start(*args: str, **kwargs: Any) -> SdcliProcess:
        started.append(SdcliProcess(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        process.kill()
