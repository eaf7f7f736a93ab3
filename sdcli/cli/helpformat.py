"""--help as people and pipes read it: `NAME` in usage lines, no padding spaces in a pipe.

typer writes a required argument as `{NAME}`, and rich pads every help line to the width of
a terminal even when there is none; `sdcli … --help | grep` and diffs of the help then carry
braces nobody types and invisible trailing spaces.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from typer.core import TyperCommand, TyperGroup

# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
_BRACED = r"^\{(.*)\}$"
_TRAILING = r"(?m)[ \t]+$"


class _LineTrimmer:
    """A stdout stand-in that drops the spaces at the end of each line written through it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        head, newline, tail = (self._pending + text).rpartition("\n")
        if newline:
            self._stream.write(re.sub(_TRAILING, "", head) + "\n")
        self._pending = tail
        return len(text)

    def finish(self) -> None:
        if self._pending:
            self._stream.write(self._pending.rstrip(" \t"))
        self._pending = ""
        self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def trimmed_stdout() -> Iterator[None]:
    """While help is written to a pipe or file, no line ends in spaces."""
    stream = sys.stdout
    if stream is None or stream.isatty():
        yield
        return
    trimmer = _LineTrimmer(stream)
    sys.stdout = trimmer  # write, flush and isatty are all that help printing uses
    try:
        yield
    finally:
        sys.stdout = stream
        trimmer.finish()


def plain_usage(pieces: list[str]) -> list[str]:
    return [re.sub(_BRACED, r"\1", piece) for piece in pieces]


class _SdcliHelp:
    """sdcli's help conventions: plain usage pieces, trimmed help in a pipe."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return plain_usage(super().collect_usage_pieces(ctx))  # type: ignore[misc]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with trimmed_stdout():
            super().format_help(ctx, formatter)  # type: ignore[misc]


class SdcliCommand(_SdcliHelp, TyperCommand):
    """Every sdcli command."""


class HelpGroup(_SdcliHelp, TyperGroup):
    """A command group with the same help conventions as SdcliCommand."""


def use_sdcli_classes(typer_app: Any) -> None:
    """Give every command registered on `typer_app` (and its sub-apps) SdcliCommand, so a
    command added later gets the same help without having to ask for it."""
    for command in typer_app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = SdcliCommand
    for group in typer_app.registered_groups:
        if not isinstance(group.cls, type) or group.cls is TyperGroup:  # typer's placeholder
            group.cls = HelpGroup
        if group.typer_instance is not None:
            use_sdcli_classes(group.typer_instance)
