"""Shell completion values: preset names from disk, model and sampler names from the server.

Completion runs on every Tab press, so the server gets a short timeout, and every failure
(server down, bad config, refused credentials) quietly completes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sdcli.client import WebUIClient

COMPLETION_TIMEOUT = 1.0  # seconds, for connecting and for the answer
HELP_WIDTH = 50  # typer renders zsh help through rich, which wraps (and breaks) long lines


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= HELP_WIDTH else text[: HELP_WIDTH - 1] + "…"


def complete_preset(incomplete: str) -> list[tuple[str, str]]:
    """Preset names on the search path (first hit wins), with their descriptions as help."""
    try:
        from sdcli.presets import list_presets

        low = incomplete.lower()
        return [
            (p.name, _short(p.description))
            for p in list_presets()
            if p.name.lower().startswith(low)
        ]
    except Exception:  # completion must never print a traceback into the shell
        return []


def complete_model(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Model names (which `set-model` and `--model` accept exactly), with titles as help."""

    def names(client: WebUIClient) -> list[tuple[str, str]]:
        return [(m.model_name, _short(m.title)) for m in client.sd_models() if m.model_name]

    return _matching(incomplete, _ask_server(ctx, names))


def complete_sampler(ctx: typer.Context, incomplete: str) -> list[str]:
    """Sampler names as the server spells them."""

    def names(client: WebUIClient) -> list[tuple[str, str]]:
        return [(s.name, "") for s in client.samplers()]

    return [name for name, _ in _matching(incomplete, _ask_server(ctx, names))]


def _matching(incomplete: str, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    low = incomplete.lower()
    return [(name, help_) for name, help_ in items if name.lower().startswith(low)]


def _ask_server(
    ctx: typer.Context, ask: Callable[[WebUIClient], list[tuple[str, str]]]
) -> list[tuple[str, str]]:
    """Run `ask` against the server named by the command line being completed, or []."""
    try:
        from sdcli.client import WebUIClient
        from sdcli.config import load_settings

        # During completion the app callback has not run, so settings come from the parsed
        # global options of the line being completed (then the environment and config file).
        root: Any = ctx.find_root().params
        settings = load_settings(url=root.get("url"), auth=root.get("auth"))
        with WebUIClient.from_settings(settings, quick=COMPLETION_TIMEOUT) as client:
            return ask(client)
    except Exception:  # completion must never print a traceback into the shell
        return []


# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
_BASH_SPECIAL = r"([^\w@%+=:,./-])"


def bash_word(value: str) -> str:
    """`Euler a` as bash must insert it to stay one word: `Euler\\ a`.

    bash puts a completion into the command line exactly as given, so a name with a space
    became two words (the second one went into the prompt, the first picked another sampler).
    """
    return re.sub(_BASH_SPECIAL, r"\\\1", value)


def quote_bash_completions() -> None:
    """Make typer's bash completion escape what it completes (see bash_word)."""
    from typer._click.shell_completion import add_completion_class
    from typer._completion_classes import BashComplete

    class QuotingBashComplete(BashComplete):
        def format_completion(self, item: Any) -> str:
            return bash_word(str(item.value))

    add_completion_class(QuotingBashComplete, "bash")
