"""The `/` commands of interactive mode: their names, arguments and help, and how a line is read.

Pure: no I/O. `parse_line` tells a prompt from a command; `engine` carries the commands out.
"""

from __future__ import annotations

from sdcli.datatypes import frozen
from sdcli.errors import UsageError


@frozen
class CommandSpec:
    """One `/` command: what it takes and what it does (the /help table, completion's hints)."""

    args: str
    help: str


COMMANDS: dict[str, CommandSpec] = {
    "preset": CommandSpec("NAME | -NAME", "add a preset (later ones win); -NAME removes it"),
    "set": CommandSpec("KEY=VALUE", "any setting or request field, as --set; KEY= removes it"),
    "neg": CommandSpec("TEXT", "the negative prompt (nothing: back to the presets')"),
    "seed": CommandSpec("N | random", "a fixed seed for the next prompts, or a new one each time"),
    "model": CommandSpec("NAME", "switch the server's checkpoint (as set-model)"),
    "size": CommandSpec("WxH", "width and height, e.g. 512x768"),
    "steps": CommandSpec("N", "sampling steps"),
    "again": CommandSpec("", "the last prompt again, with the same seed"),
    "vary": CommandSpec("", "the last prompt again, with a new seed"),
    "show": CommandSpec("[N]", "show an image of this session again (the last one by default)"),
    "history": CommandSpec("[QUERY]", "past generations, searched"),
    "rerun": CommandSpec("ID", "run a past generation again"),
    "save-preset": CommandSpec("NAME", "write the current settings as a TOML preset"),
    "settings": CommandSpec("", "what the next request will use"),
    "info": CommandSpec("", "the server: flavour, version, model, busy?"),
    "interrupt": CommandSpec("", "stop the job the server is running"),
    "refresh": CommandSpec("", "read the server's names again (for completion)"),
    "help": CommandSpec("", "this list"),
    "quit": CommandSpec("", "leave (Ctrl-D too)"),
}

ALIASES = {"exit": "quit", "q": "quit", "?": "help", "negative": "neg"}


@frozen
class Command:
    """A `/` command and the rest of its line, stripped."""

    name: str
    arg: str


@frozen
class Prompt:
    """A line to generate from."""

    text: str


def parse_line(line: str) -> Command | Prompt | None:
    """What a typed line asks for; None for a blank line or a `#` comment.

    `//text` is a prompt that starts with a slash. An unknown command is a UsageError with a
    did-you-mean, never sent to the server as a prompt.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if not text.startswith("/") or text.startswith("//"):
        return Prompt(text[1:] if text.startswith("//") else text)
    word, _, rest = text[1:].partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    if name not in COMMANDS:
        from sdcli.preset_schema import did_you_mean_suffix

        raise UsageError(
            f"unknown command /{word}{did_you_mean_suffix(word, COMMANDS)}",
            hint="/help lists the commands; //text sends a prompt that starts with /",
        )
    return Command(name, rest.strip())
