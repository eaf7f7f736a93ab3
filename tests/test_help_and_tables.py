"""Small things a person reading help and tables notices (issue 10, item 11)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sdcli.cli.app import app

from cli_helpers import run_sdcli
from terminal_helpers import run_on_terminal

SAMPLE_PNG = Path(__file__).parent / "fixtures" / "sample.png"


def every_command() -> list[list[str]]:
    """The words of every command and group, sub-commands included (later ones too)."""
    words: list[list[str]] = [[]]
    words += [[c.name] for c in app.registered_commands if c.name]
    for group in app.registered_groups:
        assert group.name and group.typer_instance is not None
        words.append([group.name])
        words += [[group.name, c.name] for c in group.typer_instance.registered_commands if c.name]
    return words


COMMANDS = every_command()


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) or "sdcli" for w in COMMANDS])
def test_piped_help_has_no_trailing_spaces_and_no_braces(words: list[str]) -> None:
    r = run_sdcli(*words, "--help")
    assert r.returncode == 0, r.stderr
    padded = [line for line in r.stdout.splitlines() if line != line.rstrip()]
    assert padded == []
    usage = [line for line in r.stdout.splitlines() if "Usage:" in line]
    assert len(usage) == 1 and "{" not in usage[0], usage


def test_timeout_is_shown_as_seconds_not_text() -> None:
    r = run_sdcli("--help")
    [line] = [line for line in r.stdout.splitlines() if "--timeout" in line]
    assert "SECONDS" in line and "<str>" not in line and "TEXT" not in line


def test_info_image_file_name_stands_above_the_table(tmp_path: Path) -> None:
    folder = tmp_path / "a rather long folder name" / "with another long folder name inside"
    folder.mkdir(parents=True)
    image = folder / "20261130-141302-0001-2719867694 a cat on a mat.png"
    shutil.copy(SAMPLE_PNG, image)
    screen = run_on_terminal("info", str(image), columns=60)
    assert screen.exit_code == 0, screen.text
    header = next(i for i, row in enumerate(screen.lines) if "key" in row and "value" in row)
    # Above the header: the name, whole, only folded where the terminal ends (never at a space).
    assert "".join(row.ljust(60) for row in screen.lines[:header]).rstrip() == str(image)


def test_empty_table_columns_are_left_out() -> None:
    screen = run_on_terminal("presets", "list", columns=100)
    assert screen.exit_code == 0, screen.text
    [header] = [row for row in screen.lines if "description" in row]
    assert "source" in header
    assert "notes" not in header  # no preset shadows another: nothing to say in that column
    piped = run_sdcli("presets", "list")
    assert all(line.count("\t") == 3 for line in piped.stdout.splitlines())  # a pipe keeps it
