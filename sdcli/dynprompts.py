"""Dynamic prompts: the community's template syntax (`{red|blue} {cat|dog}`, `__wildcard__`
files) turned into prompts by the `dynamicprompts` library, as the web UI's Dynamic Prompts
extension does.

The library (and pyparsing under it) is imported only when a prompt uses the syntax: most runs
never pay for it. A prompt without `{…|…}` or `__name__` is sent exactly as typed, so the web
UI's own syntax (`(word:1.2)`, `[a|b]`, `<lora:x:1>`) is never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from sdcli.errors import UsageError

if TYPE_CHECKING:
    from dynamicprompts.wildcards import WildcardManager

# `{a|…` (a variant; an unclosed one is a mistake to report) or `__name__` (`__~name__`,
# `__sub/name__`, `__name*__`): what makes a prompt a template when expansion is automatic.
SYNTAX: Final = r"\{[^{}]*\||__[~@!]?[\w*/.\-]+?__"  # compiled (and cached) by `re` at first use
# With --combinatorial and no --variants, a template that gives more prompts is refused.
COMBINATORIAL_CAP: Final = 1000
MAX_VARIANTS: Final = 10000

Switch = Literal["auto", "on"]


def has_syntax(text: str) -> bool:
    """Whether `text` holds a variant `{a|b}` or a wildcard `__name__`."""
    return re.search(SYNTAX, text) is not None


class DynamicPrompts:
    """How a run turns templates into prompts (see README "Prompt sweeps").

    `switch`: "auto" expands prompts that hold the syntax, "on" every prompt. `variants`: how
    many prompts a template gives (random: default 1; --combinatorial: at most that many, all
    by default up to COMBINATORIAL_CAP). `wildcards`: the directory of `name.txt` files;
    `wildcards_given` when the user named it (then it must exist). A plain class, not a
    dataclass: every `generate` makes one, and a dataclass costs milliseconds to define.
    """

    __slots__ = ("combinatorial", "switch", "variants", "wildcards", "wildcards_given")

    def __init__(
        self,
        wildcards: Path,
        *,
        wildcards_given: bool = False,
        switch: Switch = "auto",
        combinatorial: bool = False,
        variants: int | None = None,
    ) -> None:
        self.wildcards = wildcards
        self.wildcards_given = wildcards_given
        self.switch = switch
        self.combinatorial = combinatorial
        self.variants = variants

    def applies(self, text: str) -> bool:
        return self.switch == "on" or has_syntax(text)

    def count(self) -> int:
        """How many prompts a random template gives."""
        return self.variants or 1

    def check(self, template: str, what: str = "the prompt") -> None:
        """Refuse, before anything is sent, a template the library cannot parse or one that
        names a wildcard file that is not there."""
        with _Library():
            self._check(template, what)

    def _check(self, template: str, what: str) -> None:
        from dynamicprompts.commands import WildcardCommand

        where = f"{what} {_short(template)}"
        command = self._parse(template, where)
        manager = self._manager()
        for node in _walk(command):
            if isinstance(node, WildcardCommand) and isinstance(node.wildcard, str):
                _values(manager, node.wildcard, self.wildcards, where)

    def expand(self, template: str, seeds: Sequence[int] | None) -> list[str]:
        """The prompts of one template: random ones (prompt k drawn with `seeds[k]` when the
        run's seed is fixed, so a command gives the same prompts again), or every
        combination in the library's order."""
        with _Library():
            return self._expand(template, seeds)

    def _expand(self, template: str, seeds: Sequence[int] | None) -> list[str]:
        where = f"the prompt {_short(template)}"
        self._parse(template, where)
        manager = self._manager()
        try:
            if self.combinatorial:
                return self._combinations(template, manager)
            from dynamicprompts.generators import RandomPromptGenerator

            generator = RandomPromptGenerator(manager)
            if seeds:
                return list(generator.generate(template, len(seeds), seeds=list(seeds)))
            return list(generator.generate(template, self.count()))
        except _MissingWildcard as exc:
            raise missing_wildcard(exc.name, self.wildcards, where) from None

    def _combinations(self, template: str, manager: WildcardManager) -> list[str]:
        from dynamicprompts.generators import CombinatorialPromptGenerator

        limit = self.variants if self.variants is not None else COMBINATORIAL_CAP
        prompts = list(CombinatorialPromptGenerator(manager).generate(template, limit + 1))
        if len(prompts) > limit and self.variants is None:
            raise UsageError(
                f"{_short(template)} gives more than {COMBINATORIAL_CAP} prompts with "
                "--combinatorial",
                hint="--variants N takes the first N combinations; or split the template",
            )
        return prompts[:limit]

    def _parse(self, template: str, where: str) -> Any:
        from dynamicprompts.parser.parse import parse
        from pyparsing import ParseBaseException

        try:
            return parse(template)
        except (ParseBaseException, ValueError) as exc:
            column = getattr(exc, "col", None)
            at = f" at column {column}" if isinstance(column, int) else ""
            raise UsageError(
                f"{where} is not a valid dynamic prompt{at}",
                hint="{a|b} picks one of a and b, __name__ a line of name.txt; a { or $ "
                "sent as typed needs --no-dynamic",
            ) from None

    def _manager(self) -> WildcardManager:
        return _manager(self.wildcards)


class _MissingWildcard(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_MANAGERS: dict[Path, WildcardManager] = {}


def _manager(directory: Path) -> WildcardManager:
    """One wildcard manager per directory and process: it caches the files it has read."""
    manager = _MANAGERS.get(directory)
    if manager is None:
        from dynamicprompts.wildcards import WildcardManager
        from dynamicprompts.wildcards.values import WildcardValues

        class StrictManager(WildcardManager):
            """A wildcard that matches no file is an error, not the text `__name__`."""

            def get_values(self, wildcard: str) -> WildcardValues:
                values = super().get_values(wildcard)
                if not len(values):
                    raise _MissingWildcard(wildcard)
                return values

        # A directory that is not there holds no wildcard: each one named is then reported.
        manager = StrictManager(directory if directory.is_dir() else None)
        _MANAGERS[directory] = manager
    return manager


def _values(manager: WildcardManager, name: str, directory: Path, where: str) -> None:
    try:
        manager.get_values(name)
    except _MissingWildcard:
        raise missing_wildcard(name, directory, where) from None
    except ValueError as exc:  # `..` in a name: never outside the directory
        raise UsageError(f"{where}: bad wildcard name __{name}__: {exc}") from None


def missing_wildcard(name: str, directory: Path | None, where: str) -> UsageError:
    """The error for `__name__` that matches no file in `directory`."""
    there = ""
    if directory is not None:
        there = f" in {directory}" if directory.is_dir() else f" (no directory {directory})"
    return UsageError(
        f"{where}: no wildcard file for __{name}__{there}",
        hint="a wildcard is NAME.txt, one value a line; --wildcards DIR (env SDCLI_WILDCARDS, "
        "config key wildcards_dir) says where they are",
    )


def _walk(node: Any) -> Iterator[Any]:
    """Every command in a parsed template (they are dataclasses holding commands and lists)."""
    import dataclasses

    yield node
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for item in dataclasses.fields(node):
            yield from _children(getattr(node, item.name))


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _children(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _children(item)
    elif hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        yield from _walk(value)


def _short(template: str) -> str:
    return repr(template if len(template) <= 60 else template[:59] + "…")


class _Library:
    """The library's own notes stay off stderr: its log lines (a wildcard found in a
    subdirectory…) would reach it through Python's last-resort handler (--debug's logging still
    shows them), and pyparsing's deprecation warnings are none of the user's business."""

    def __enter__(self) -> None:
        import logging
        import warnings

        logger = logging.getLogger("dynamicprompts")
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(None, None, None)
