"""The server's names that completion offers, read once when interactive mode starts (and on
`/refresh`): a list the server cannot give is just empty, completion is a help, not a need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import TYPE_CHECKING

from sdcli.datatypes import mutable
from sdcli.errors import ConnectionFailed, SdcliError

if TYPE_CHECKING:
    from sdcli.client import WebUIClient


@mutable
class ServerLists:
    models: list[str] = field(default_factory=list)  # model names (short, as typed)
    samplers: list[str] = field(default_factory=list)
    schedulers: list[str] = field(default_factory=list)
    vaes: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    loras: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the lists that could not be read
    unreachable: bool = False

    @classmethod
    def fetch(cls, client: WebUIClient) -> ServerLists:
        """Every list, one GET each; a failure leaves that list empty and is named in `failed`."""
        lists = cls()

        def read(name: str, call: Callable[[], list[str]]) -> list[str]:
            if lists.unreachable:
                return []  # one wait for a server that is not there is enough
            try:
                return [n for n in call() if n]
            except ConnectionFailed:
                lists.unreachable = True
            except SdcliError:
                pass
            lists.failed.append(name)
            return []

        lists.models = read("models", lambda: [m.model_name for m in client.sd_models()])
        lists.samplers = read("samplers", lambda: [s.name for s in client.samplers()])
        lists.schedulers = read("schedulers", lambda: [s.label for s in client.schedulers() or ()])
        lists.vaes = read("VAEs", lambda: [v.name for v in client.sd_vaes() or ()])
        lists.styles = read("styles", lambda: [s.name for s in client.prompt_styles()])
        lists.loras = read("LoRAs", lambda: [lora.name for lora in client.loras() or ()])
        lists.embeddings = read(
            "embeddings", lambda: [e.name for e in client.embeddings() if e.loaded]
        )
        return lists
