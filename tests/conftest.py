"""Fixtures for every test: an isolated sdcli home, and the fake web UI on an ephemeral port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sdcli.testing.fake_webui import FakeWebUI

_CLEARED_ENV = (
    "SDCLI_URL",
    "SDCLI_AUTH",
    "SDCLI_TIMEOUT",
    "SDCLI_OUTPUT_DIR",
    "SDCLI_PRESETS_PATH",
    "SDCLI_PRESET",
    "SDCLI_DEBUG",
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
