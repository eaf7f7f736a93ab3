"""`sdcli presets list/show/new/edit/path`, end to end through Typer and a real subprocess."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcli.cli import presets_cmd
from sdcli.cli.app import app
from sdcli.cli.completion import complete_preset
from sdcli.config import builtin_presets_dir, user_presets_dir

from cli_helpers import run_sdcli

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

SAMPLE_PNG = Path(__file__).parent / "fixtures" / "sample.png"
runner = CliRunner()


def write_user_preset(name: str, text: str) -> Path:
    path = user_presets_dir() / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rows(stdout: str) -> dict[str, list[str]]:
    """Piped table output: first field -> the other fields."""
    return {line.split("\t")[0]: line.split("\t")[1:] for line in stdout.splitlines()}


# --- list --------------------------------------------------------------------------------------


def test_list_shows_builtins_as_tab_separated_lines_when_piped() -> None:
    result = runner.invoke(app, ["presets", "list"])
    assert result.exit_code == 0, result.stderr
    table = rows(result.stdout)
    assert set(table) == {"chibi", "draft", "sd15", "sdxl"}
    source, description, notes = table["draft"]
    assert source == "built-in"
    assert description.startswith("Fast preview")
    assert notes == ""
    assert result.stderr == ""


def test_list_marks_shadowing_and_broken_presets() -> None:
    write_user_preset("chibi", 'description = "my chibi"\nsteps = 30\n')
    write_user_preset("broken", 'description = "half done"\nstepz = 3\n')
    result = runner.invoke(app, ["presets", "list"])
    assert result.exit_code == 0
    table = rows(result.stdout)
    assert table["chibi"] == ["user", "my chibi", "shadows built-in"]
    source, description, notes = table["broken"]
    assert (source, description) == ("user", "half done")
    assert notes.startswith("error: ") and "'stepz'" in notes and "did you mean 'steps'" in notes
    assert "1 preset file(s) cannot be loaded" in result.stderr


def test_list_json_is_one_object_per_line() -> None:
    write_user_preset("mine", "steps = 3\n")
    result = runner.invoke(app, ["presets", "list", "--json"])
    assert result.exit_code == 0
    items = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {item["name"]: item for item in items}
    assert by_name["mine"]["source"] == "user"
    assert by_name["mine"]["path"] == str(user_presets_dir() / "mine.toml")
    assert by_name["sd15"]["source"] == "built-in"
    assert by_name["sd15"]["error"] is None


def test_list_with_presets_path_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "draft.toml").write_text('description = "team draft"\nsteps = 8\n')
    monkeypatch.setenv("SDCLI_PRESETS_PATH", str(team))
    result = runner.invoke(app, ["presets", "list"])
    assert rows(result.stdout)["draft"] == ["path", "team draft", "shadows built-in"]


# --- show --------------------------------------------------------------------------------------


def test_show_prints_resolved_values_and_origin() -> None:
    write_user_preset("tall", 'extends = "chibi"\nheight = 768\n[params]\ntiling = true\n')
    result = runner.invoke(app, ["presets", "show", "tall"])
    assert result.exit_code == 0, result.stderr
    table = rows(result.stdout)
    assert table["height"] == ["768"]
    assert table["width"] == ["512"]  # from chibi
    assert table["sampler"] == ["DPM++ 2M"]
    assert table["params.tiling"] == ["true"]
    assert "extends" not in table
    assert "tall (user: " in result.stderr and "extends chibi" in result.stderr


def test_show_toml_is_the_merged_preset() -> None:
    write_user_preset("tall", 'extends = "chibi"\ndescription = "tall chibi"\nheight = 768\n')
    result = runner.invoke(app, ["presets", "show", "tall", "--toml"])
    assert result.exit_code == 0
    data = tomllib.loads(result.stdout)
    assert data["description"] == "tall chibi"
    assert data["height"] == 768
    assert data["steps"] == 27
    assert "extends" not in data
    assert result.stderr == ""


def test_show_unknown_preset_exits_2_with_suggestion() -> None:
    result = runner.invoke(app, ["presets", "show", "chibbi"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown preset 'chibbi'" in result.stderr and "did you mean 'chibi'" in result.stderr
    assert "Traceback" not in result.stderr


# --- new ---------------------------------------------------------------------------------------


def test_new_writes_flags_and_prints_the_path() -> None:
    result = runner.invoke(
        app,
        [
            "presets", "new", "portrait",
            "--extends", "sd15", "--size", "512x768", "--steps", "30", "--cfg", "6.5",
            "--sampler", "Euler a", "-n", "blurry", "--clip-skip", "2", "--seed", "7",
            "-b", "2", "-c", "3", "--model", "counterfeit", "--description", "tall SD 1.5",
            "--prompt-template", "masterpiece, {prompt}", "--set", "enable_hr=true",
            "--set", "hr_scale=1.5", "--scheduler", "Karras",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == user_presets_dir() / "portrait.toml"
    data = tomllib.loads(path.read_text())
    assert data == {
        "description": "tall SD 1.5",
        "extends": "sd15",
        "prompt_template": "masterpiece, {prompt}",
        "negative_prompt": "blurry",
        "sampler": "Euler a",
        "scheduler": "Karras",
        "steps": 30,
        "cfg_scale": 6.5,
        "clip_skip": 2,
        "width": 512,
        "height": 768,
        "seed": 7,
        "batch_size": 2,
        "batch_count": 3,
        "model": "counterfeit",
        "params": {"enable_hr": True, "hr_scale": 1.5},
    }


def test_new_refuses_to_overwrite_without_force() -> None:
    assert runner.invoke(app, ["presets", "new", "mine", "--steps", "5"]).exit_code == 0
    again = runner.invoke(app, ["presets", "new", "mine", "--steps", "9"])
    assert again.exit_code == 2
    assert again.stdout == ""
    assert "already exists" in again.stderr and "--force" in again.stderr
    path = user_presets_dir() / "mine.toml"
    assert tomllib.loads(path.read_text())["steps"] == 5
    forced = runner.invoke(app, ["presets", "new", "mine", "--steps", "9", "--force"])
    assert forced.exit_code == 0
    assert tomllib.loads(path.read_text())["steps"] == 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # the value flags (--steps, --size…): tests/test_value_flags.py, for generate too
        (["--extends", "nosuch"], "unknown preset 'nosuch'"),
        (["--set", "novalue"], "KEY=VALUE"),
        (["--prompt-template", "no placeholder"], "{prompt}"),
    ],
)
def test_new_rejects_bad_values_with_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["presets", "new", "bad", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert not (user_presets_dir() / "bad.toml").exists()


def test_new_rejects_an_unsafe_name() -> None:
    result = runner.invoke(app, ["presets", "new", "../escape", "--steps", "3"])
    assert result.exit_code == 2
    assert "invalid preset name" in result.stderr


def test_new_from_image_takes_the_look_but_not_the_seed_or_prompt() -> None:
    result = runner.invoke(
        app, ["presets", "new", "likethat", "--from-image", str(SAMPLE_PNG), "--steps", "20"]
    )
    assert result.exit_code == 0, result.stderr
    data = tomllib.loads(Path(result.stdout.strip()).read_text())
    assert data == {
        "sampler": "Euler a",
        "steps": 20,  # the flag beats the image's 2
        "cfg_scale": 7.0,
        "clip_skip": 2,
        "width": 64,
        "height": 64,
        "model": "random-sd15",
    }


def test_new_from_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = runner.invoke(app, ["presets", "new", "x", "--from-image", str(text)])
    assert result.exit_code == 2
    assert "is not a PNG" in result.stderr


def test_round_trip_new_show_generate_dry_run() -> None:
    made = runner.invoke(
        app,
        ["presets", "new", "trip", "--extends", "draft", "--cfg", "5", "--clip-skip", "2",
         "--prompt-template", "best, {prompt}", "--set", "tiling=true"],
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    shown = runner.invoke(app, ["presets", "show", "trip"])
    table = rows(shown.stdout)
    assert table["steps"] == ["12"] and table["cfg_scale"] == ["5.0"]
    dry = runner.invoke(
        app, ["--url", "http://127.0.0.1:9", "generate", "-p", "trip", "--dry-run", "a", "cat"]
    )
    assert dry.exit_code == 0, dry.stderr
    body = json.loads(dry.stdout)
    assert body["prompt"] == "best, a cat"
    assert body["steps"] == 12
    assert body["cfg_scale"] == 5
    assert body["sampler_name"] == "Euler a"
    assert body["tiling"] is True
    assert body["override_settings"] == {"CLIP_stop_at_last_layers": 2}


# --- edit --------------------------------------------------------------------------------------


def test_edit_without_a_terminal_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "editor-ran"
    env = {"EDITOR": f"{sys.executable} -c \"open(r'{marker}', 'w')\""}
    result = runner.invoke(app, ["presets", "edit", "draft"], env=env)
    assert result.exit_code == 2
    assert "an editor needs a terminal" in result.stderr
    assert not marker.exists()
    assert not (user_presets_dir() / "draft.toml").exists()


def _editor(tmp_path: Path, append: str) -> str:
    """An $EDITOR that appends `append` to the file it is given, as a person would type it."""
    script = tmp_path / "fake_editor.py"
    script.write_text(
        "import sys\n"
        f"with open(sys.argv[1], 'a', encoding='utf-8') as f:\n    f.write({append!r})\n"
    )
    return f'"{sys.executable}" "{script}"'


def test_edit_copies_a_builtin_to_the_user_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presets_cmd, "_stdin_is_tty", lambda: True)
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "\ncfg_scale = 4.5\n"))
    result = runner.invoke(app, ["presets", "edit", "draft"])
    assert result.exit_code == 0, result.stderr
    copy = user_presets_dir() / "draft.toml"
    assert result.stdout.strip() == str(copy)
    assert "copied built-in preset 'draft'" in result.stderr
    data = tomllib.loads(copy.read_text())
    assert data["cfg_scale"] == 4.5 and data["steps"] == 12
    assert "cfg_scale" not in (builtin_presets_dir() / "draft.toml").read_text()


def test_edit_unchanged_builtin_leaves_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presets_cmd, "_stdin_is_tty", lambda: True)
    monkeypatch.setenv("VISUAL", _editor(tmp_path, ""))
    monkeypatch.setenv("EDITOR", "false")  # VISUAL wins
    result = runner.invoke(app, ["presets", "edit", "draft"])
    assert result.exit_code == 0, result.stderr
    assert not (user_presets_dir() / "draft.toml").exists()
    assert "no changes" in result.stderr


def test_edit_reports_errors_and_can_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_user_preset("mine", "steps = 3\n")
    monkeypatch.setattr(presets_cmd, "_stdin_is_tty", lambda: True)
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "stepz = 4\n"))
    result = runner.invoke(app, ["presets", "edit", "mine"], input="k\n")
    assert result.exit_code == 2
    assert "unknown key 'stepz'" in result.stderr
    assert "What now? (e)dit again, (d)iscard the changes" in result.stderr
    assert "saved with errors" in result.stderr
    assert str(path) not in result.stdout  # (the runner echoes the typed answer to stdout)
    assert "stepz = 4" in path.read_text()


def test_edit_again_until_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file stays invalid, so the user is asked after each editor run until they stop."""
    path = write_user_preset("mine", "steps = 3\n")
    monkeypatch.setattr(presets_cmd, "_stdin_is_tty", lambda: True)
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "# touched\n"))
    path.write_text("steps = 0\n")
    result = runner.invoke(app, ["presets", "edit", "mine"], input="e\nk\n")
    assert result.exit_code == 2
    assert path.read_text().count("# touched") == 2
    assert result.stderr.count("'steps' must be between 1 and 150") == 2


def test_edit_with_a_missing_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    write_user_preset("mine", "steps = 3\n")
    monkeypatch.setattr(presets_cmd, "_stdin_is_tty", lambda: True)
    monkeypatch.setenv("EDITOR", "/nonexistent/editor")
    result = runner.invoke(app, ["presets", "edit", "mine"])
    assert result.exit_code == 2
    assert "cannot start the editor" in result.stderr


# --- path --------------------------------------------------------------------------------------


def test_path_lists_the_search_path_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team, shared = tmp_path / "team", tmp_path / "shared"
    monkeypatch.setenv("SDCLI_PRESETS_PATH", os.pathsep.join([str(team), str(shared)]))
    result = runner.invoke(app, ["presets", "path"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        str(team),
        str(shared),
        str(user_presets_dir()),
        str(builtin_presets_dir()),
    ]


def test_path_of_a_name_is_the_winning_file() -> None:
    assert runner.invoke(app, ["presets", "path", "chibi"]).stdout.strip() == str(
        builtin_presets_dir() / "chibi.toml"
    )
    mine = write_user_preset("chibi", "steps = 1\n")
    assert runner.invoke(app, ["presets", "path", "chibi"]).stdout.strip() == str(mine)
    missing = runner.invoke(app, ["presets", "path", "nope"])
    assert missing.exit_code == 2 and missing.stdout == ""


# --- completion --------------------------------------------------------------------------------


def test_complete_preset_names_with_descriptions() -> None:
    write_user_preset("sdcustom", 'description = "' + "x" * 80 + '"\n')
    names = dict(complete_preset("sd"))
    assert set(names) == {"sd15", "sdxl", "sdcustom"}
    assert len(names["sdcustom"]) <= 50


def test_shell_completes_preset_names_for_generate_and_show() -> None:
    env = {
        "_SDCLI_COMPLETE": "complete_bash",
        "COMP_WORDS": "sdcli presets show d",
        "COMP_CWORD": "3",
    }
    result = runner.invoke(app, [], env=env, prog_name="sdcli")
    assert result.stdout.split() == ["draft"]
    env = {
        "_SDCLI_COMPLETE": "complete_bash",
        "COMP_WORDS": "sdcli generate -p s",
        "COMP_CWORD": "3",
    }
    result = runner.invoke(app, [], env=env, prog_name="sdcli")
    assert result.stdout.split() == ["sd15", "sdxl"]


def test_show_completion_script_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    # typer finds the shell among the process's ancestors; a runner started by a daemon has none.
    monkeypatch.setattr("typer.completion._get_shell_name", lambda: "bash")
    result = runner.invoke(app, ["--show-completion", "bash"], prog_name="sdcli")
    assert result.exit_code == 0
    assert "_SDCLI_COMPLETE=complete_bash" in result.stdout


# --- the scripting contract, through a real process --------------------------------------------


def test_subprocess_new_then_list_json_and_errors_without_ansi() -> None:
    made = run_sdcli("presets", "new", "proc", "--steps", "4", "--description", "from a process")
    assert made.returncode == 0, made.stderr
    assert made.stdout == str(user_presets_dir() / "proc.toml") + "\n"
    listed = run_sdcli("presets", "list", "--json")
    names = [json.loads(line)["name"] for line in listed.stdout.splitlines()]
    assert "proc" in names
    again = run_sdcli("presets", "new", "proc", "--steps", "4")
    assert again.returncode == 2
    assert again.stdout == ""
    assert again.stderr.startswith("sdcli: error: preset 'proc' already exists")
    assert "\x1b[" not in again.stderr


def test_presets_list_imports_neither_requests_nor_pillow() -> None:
    done = run_sdcli("presets", "list", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "typer" in imported  # the import log is really there
    assert not {"requests", "PIL", "PIL.Image", "rich"} & imported
