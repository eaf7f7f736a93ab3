"""The value flags come from the preset schema: `generate` and `presets new` have the same ones,
named and typed alike, and a new schema entry with a `flag` is a new flag of both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from sdcli.cli import options
from sdcli.cli.app import app
from sdcli.config import user_presets_dir
from sdcli.preset_schema import PRESET_KEYS, KeySpec
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import invoke

# the parser's name for each type
PARAM_TYPES = {str: "str", int: "int", float: "float", bool: "boolean", list: "str"}


def command_options(*path: str) -> dict[str, Any]:
    """The parser's options of `sdcli PATH…`, by the name the command function receives."""
    command: Any = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]
    return {p.name: p for p in command.params if p.opts[0].startswith("-")}


FLAGGED = {key: spec for key, spec in PRESET_KEYS.items() if spec.flag}
TXT2IMG_FLAGGED = {key: spec for key, spec in FLAGGED.items() if not spec.img2img_only}
COMMANDS = [("generate",), ("img2img",), ("presets", "new")]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_flagged_key_is_an_option_named_and_typed_by_the_schema(
    path: tuple[str, ...],
) -> None:
    found = command_options(*path)
    for key, spec in (TXT2IMG_FLAGGED if path == ("generate",) else FLAGGED).items():
        assert key in found, f"{key} has no flag in {' '.join(path)}"
        param = found[key]
        assert param.opts == [spec.flag, *([spec.short] if spec.short else [])]
        if spec.type is bool:  # a switch: --tiling / --no-tiling, unset unless given
            assert param.secondary_opts == ["--no-" + str(spec.flag)[2:]]
        assert param.type.name == PARAM_TYPES[spec.type]
        assert param.help == options.flag_help(spec)
        assert not param.required and param.default is None


def test_both_commands_share_exactly_the_schema_flags_and_size() -> None:
    generate, new = command_options("generate"), command_options("presets", "new")
    shared = {name for name in generate if name in new and generate[name].opts == new[name].opts}
    own = {"from_image", "set_"}  # in both, but with each command's own meaning and help
    assert shared - own == {*TXT2IMG_FLAGGED, "size"}
    img2img_only = set(FLAGGED) - set(TXT2IMG_FLAGGED)
    assert img2img_only <= set(new) and not img2img_only & set(generate)
    assert len(FLAGGED) == 33  # today's flags; a new one is one schema entry


def test_a_new_schema_entry_is_a_new_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command built after a `KeySpec` with a flag is added gets that flag, typed, checked."""
    spec = KeySpec(float, "how much of something", 0, 2, flag="--something", short="-S")
    monkeypatch.setitem(PRESET_KEYS, "something", spec)
    received: list[dict[str, Any]] = []
    probe = typer.Typer()

    @probe.command()
    @options.with_value_flags
    def run(*, flags: dict[str, Any]) -> None:
        received.append(flags)

    runner = CliRunner()
    result = runner.invoke(probe, ["-S", "1.5", "--steps", "3", "--size", "512x768"])
    assert result.exit_code == 0, result.output
    assert received == [{"steps": 3, "width": 512, "height": 768, "something": 1.5}]
    wide = runner.invoke(probe, ["--help"], env={"COLUMNS": "200"}).output  # help unwrapped
    assert "How much of something (0 to 2)." in wide
    bad = runner.invoke(probe, ["--something", "lots"])
    assert bad.exit_code == 2 and "'lots' is not a valid float" in bad.output


def test_a_flag_parameter_cannot_shadow_a_command_parameter() -> None:
    def clash(steps: int = 0, *, flags: dict[str, Any]) -> None:
        """`steps` is a value flag's parameter."""

    with pytest.raises(TypeError, match="steps"):
        options.with_value_flags(clash)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--steps", "0"], "--steps must be between 1 and 150"),
        (["--cfg", "-1"], "--cfg must be between 0 and 30"),
        (["--width", "500"], "--width must be a multiple of 8"),
        (["--height", "4096"], "--height must be between"),
        (["--clip-skip", "13"], "--clip-skip must be between 1 and 12"),
        (["-b", "0"], "--batch-size must be between 1 and 8"),
        (["--count", "0"], "--count must be between 1 and 100"),
        (["--seed", "-2"], "--seed must be between -1 and 4294967295"),
        (["--sampler", " "], "--sampler must not be empty"),
        (["--size", "big"], "--size 'big' must look like WIDTHxHEIGHT"),
    ],
)
def test_a_bad_value_flag_is_refused_alike_by_both_commands(
    fake_webui: FakeWebUI, tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = tmp_path / "out"
    generate = invoke(["--url", fake_webui.url, "generate", *args, "-o", str(out), "x"])
    new = invoke(["presets", "new", "bad", *args])
    for result in (generate, new):
        assert result.exit_code == 2, result.stderr
        assert result.stdout == ""
        assert result.stderr.startswith(f"sdcli: error: {fragment}"), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert fake_webui.requests == []
    assert not out.exists()
    assert not (user_presets_dir() / "bad.toml").exists()
