"""Completion as you type: `/` commands, then each command's names; inside a prompt, `<lora:`
names and embedding names. The server's lists come from `ServerLists` (read once, `/refresh`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from sdcli.interactive.commands import ALIASES, COMMANDS
from sdcli.interactive.lists import ServerLists

_LORA = re.compile(r"<lora:([^:>]*)$", re.IGNORECASE)
_LAST_WORD = re.compile(r"[\w.\-]+$")
MIN_TYPED = 2  # letters of a prompt word before embedding names are offered

# /set keys whose values are names the server lists
_SET_VALUES: dict[str, Callable[[ServerLists], list[str]]] = {
    "sampler_name": lambda lists: lists.samplers,
    "hr_sampler_name": lambda lists: lists.samplers,
    "scheduler": lambda lists: lists.schedulers,
    "override_settings.sd_vae": lambda lists: lists.vaes,
    "override_settings.sd_model_checkpoint": lambda lists: lists.models,
}


class InteractiveCompleter(Completer):
    """`lists()` gives the server's names as they are now (refreshed without a new completer);
    `presets()` the preset names."""

    def __init__(
        self,
        lists: Callable[[], ServerLists | None],
        presets: Callable[[], list[str]],
        in_use: Callable[[], list[str]],
    ) -> None:
        self.lists = lists
        self.presets = presets
        self.in_use = in_use

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        text = document.text_before_cursor
        lists = self.lists() or ServerLists()
        if text.startswith("/") and not text.startswith("//"):
            yield from self._command(text, lists)
        else:
            yield from self._prompt(text, lists)

    def _command(self, text: str, lists: ServerLists) -> Iterator[Completion]:
        word, space, arg = text[1:].partition(" ")
        if not space:
            for name, spec in COMMANDS.items():
                if name.startswith(word.lower()):
                    yield Completion(
                        f"/{name} " if spec.args else f"/{name}",
                        start_position=-len(text),
                        display=f"/{name}",
                        display_meta=spec.help,
                    )
            return
        name = ALIASES.get(word.lower(), word.lower())
        if name == "preset":
            current = arg.rsplit(" ", 1)[-1]  # several names, one word each
            if current.startswith("-"):
                yield from _matching(current[1:], self.in_use(), prefix="-")
            else:
                yield from _matching(current, self.presets())
        elif name == "model":
            yield from _matching(arg, lists.models)  # the rest of the line is one name
        elif name == "set":
            key, eq, value = arg.partition("=")
            if eq and key.strip() in _SET_VALUES:
                yield from _matching(value, _SET_VALUES[key.strip()](lists))
            elif not eq:
                yield from _matching(arg, [f"{k}=" for k in _SET_VALUES], space=False)
        elif name == "seed":
            yield from _matching(arg, ["random"])

    def _prompt(self, text: str, lists: ServerLists) -> Iterator[Completion]:
        lora = _LORA.search(text)
        if lora is not None:
            for name in _starting(lora.group(1), lists.loras):
                yield Completion(f"{name}:1>", start_position=-len(lora.group(1)), display=name)
            return
        word = _LAST_WORD.search(text)
        if word is not None and len(word.group(0)) >= MIN_TYPED:
            yield from _matching(word.group(0), lists.embeddings, space=False)


def _starting(typed: str, names: Iterable[str]) -> list[str]:
    """Names starting with what was typed (ignoring case), then names holding it."""
    low = typed.lower()
    names = list(dict.fromkeys(names))
    first = [n for n in names if n.lower().startswith(low)]
    inside = [n for n in names if low and low in n.lower() and n not in first]
    return first + inside


def _matching(
    typed: str, names: Iterable[str], *, prefix: str = "", space: bool = False
) -> Iterator[Completion]:
    """Completions that replace everything typed for this argument, spaces included: a name
    with spaces ("Euler a", "DPM++ 2M") goes in whole, as the server spells it."""
    for name in _starting(typed, names):
        yield Completion(
            prefix + name + (" " if space else ""),
            start_position=-(len(typed) + len(prefix)),
            display=prefix + name,
        )
