"""Per-process state shared by commands: settings resolved once, one client (one HTTP session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdcli.client import WebUIClient
    from sdcli.config import Settings
    from sdcli.listcache import ListCache


@dataclass
class AppState:
    """The global options; settings and the client are made when a command first asks."""

    url: str | None = None
    auth: str | None = field(default=None, repr=False)
    timeout: str | None = None
    debug: bool = False
    no_cache: bool = False  # --no-cache: lists from the server, written to the cache afresh
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

    def list_cache(self, *, fresh: bool = False) -> ListCache:
        """The server's lists on disk; `fresh`: read from the server, still written (set-model)."""
        from sdcli.config import cache_dir
        from sdcli.listcache import ListCache

        s = self.settings
        return ListCache(cache_dir(), s.url, s.cache_ttl, read=not (fresh or self.no_cache))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
