"""Per-process state shared by commands: settings resolved once, one client (one HTTP session)."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from sdcli.datatypes import mutable

if TYPE_CHECKING:
    from sdcli.client import WebUIClient
    from sdcli.config import Server, Settings
    from sdcli.listcache import ListCache


@mutable
class AppState:
    """The global options; settings and the client are made when a command first asks."""

    url: str | list[str] | None = None  # --url, once or several times
    auth: str | None = field(default=None, repr=False)
    timeout: str | None = None
    debug: bool = False
    no_cache: bool = False  # --no-cache: lists from the server, written to the cache afresh
    _settings: Settings | None = None
    _client: WebUIClient | None = None
    _others: list[WebUIClient] = field(default_factory=list)  # a run's other servers

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

    def servers(self) -> list[tuple[Server, WebUIClient]]:
        """A run's servers, each with its own client (one HTTP session per server); the first
        is `client`. One server unless --url named several (sdcli.config)."""
        from sdcli.client import WebUIClient
        from sdcli.config import Server

        s = self.settings
        if len(s.servers) < 2:
            return [(Server(s.url, s.url, s.auth), self.client)]
        pairs = [(s.servers[0], self.client)]
        for server in s.servers[1:]:
            client = WebUIClient(
                server.url,
                auth=server.auth,
                timeout=s.timeout,
                connect_timeout=s.connect_timeout,
                unknown_host=server.unknown_host,
            )
            self._others.append(client)
            pairs.append((server, client))
        return pairs

    def list_cache(self, *, fresh: bool = False, url: str | None = None) -> ListCache:
        """The server's lists on disk; `fresh`: read from the server, still written (set-model)."""
        from sdcli.config import cache_dir
        from sdcli.listcache import ListCache

        s = self.settings
        read = not (fresh or self.no_cache)
        return ListCache(cache_dir(), url or s.url, s.cache_ttl, read=read)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        for client in self._others:
            client.close()
