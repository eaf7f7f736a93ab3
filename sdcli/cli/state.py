"""Per-process state shared by commands: settings resolved once, one client (one HTTP session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdcli.client import WebUIClient
    from sdcli.config import Settings


@dataclass
class AppState:
    url: str | None = None
    auth: str | None = field(default=None, repr=False)
    timeout: str | None = None
    debug: bool = False
    _settings: Settings | None = None
    _client: WebUIClient | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from sdcli.config import load_settings

            self._settings = load_settings(
                url=self.url, auth=self.auth, timeout=self.timeout, debug=self.debug
            )
            from sdcli.cli import render

            for warning in self._settings.warnings:
                render.warn(warning)
        return self._settings

    def output_dir(self, flag: Path | None) -> Path:
        return flag if flag is not None else self.settings.output_dir

    @property
    def client(self) -> WebUIClient:
        if self._client is None:
            from sdcli.client import WebUIClient

            self._client = WebUIClient.from_settings(self.settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
