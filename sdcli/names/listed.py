"""Names from the server's plain lists (upscalers, VAEs, styles, LoRAs), resolved like samplers.

The web UI ignores a style, VAE or `<lora:…>` it does not know, and fails an unknown upscaler
only after the upload (500 AssertionError): each name is checked before anything is sent,
exactly, then ignoring case, then ignoring separators; an unknown one exits 2 with a
"did you mean".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sdcli.errors import NotFoundError
from sdcli.names.lookup import did_you_mean, fold

# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
# <lora:NAME> or <lora:NAME:0.8> (networks.py: the name ends at the first ":" or ">")
_LORA_TAG = r"(?i)<lora:([^:>]+)(?::[^>]*)?>"


def resolve_listed(name: str, choices: Sequence[str], what: str) -> str:
    """The server's spelling of `name` among `choices` (NotFoundError, exit 2, when none)."""
    wanted = name.strip()
    key = fold(wanted)
    unique = list(dict.fromkeys(choices))
    for test in (
        lambda c: c == wanted,
        lambda c: c.casefold() == wanted.casefold(),
        lambda c: bool(key) and fold(c) == key,
    ):
        hits = [c for c in unique if test(c)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise NotFoundError(
                f"{wanted!r} matches several {what}s: {', '.join(hits[:6])}",
                candidates=hits,
                hint="type it exactly as the server spells it",
            )
    raise NotFoundError(
        f"the server has no {what} {wanted!r}", candidates=unique, hint=_hint(wanted, unique, what)
    )


def _hint(name: str, choices: Sequence[str], what: str) -> str:
    close = did_you_mean(name, choices)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    if not choices:
        return f"it lists no {what}s"
    shown = ", ".join(repr(c) for c in choices[:8])
    return f"it has {shown}" + (f" … ({len(choices)} in all)" if len(choices) > 8 else "")


def lora_names(prompt: str) -> list[str]:
    """The LoRA names a prompt's `<lora:name:weight>` tags ask for, in order."""
    return [m.group(1).strip() for m in re.finditer(_LORA_TAG, prompt)]


def check_loras(prompts: Iterable[str], known: Sequence[str]) -> None:
    """Every `<lora:…>` must name a LoRA the server has, exactly as it spells it: the web UI
    looks names up as typed and drops an unknown one with a console line only."""
    for prompt in prompts:
        for name in lora_names(prompt):
            if name in known:
                continue
            try:
                right = resolve_listed(name, known, "LoRA")
            except NotFoundError as exc:
                exc.message = f"{exc.message} (in <lora:{name}:…>)"
                raise
            raise NotFoundError(
                f"the server has no LoRA {name!r}; it is spelled {right!r}",
                candidates=[right],
                hint=f"write <lora:{right}:…> (the web UI matches LoRA names exactly)",
            )
