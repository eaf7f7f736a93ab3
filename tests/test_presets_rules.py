"""Preset rules from issue 10, item 8: no silent shadowing, every problem at once, the offending
TOML line with a caret, and an edit that can be thrown away. Terminal parts run on a real
pseudo-terminal, read through a terminal emulator.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pexpect
import pyte
import pytest

from sdcli.config import user_presets_dir
from sdcli.presets import load_preset
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli

COLUMNS, LINES = 220, 30  # wide enough that no line of these tests wraps


def user_preset(name: str, text: str) -> Path:
    path = user_presets_dir() / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class Terminal:
    """sdcli on a pseudo-terminal; `screen()` is what a person would see once it is done."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.output = io.BytesIO()
        full_env = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        full_env.pop("NO_COLOR", None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "sdcli", *args],
            env=full_env,
            dimensions=(LINES, COLUMNS),
            timeout=60,  # a safety net against a hung test, not a timing assertion
        )
        self.child.logfile_read = self.output

    def expect(self, text: str) -> None:
        self.child.expect_exact(text)

    def answer(self, line: str) -> None:
        self.child.sendline(line)

    def finish(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        status = self.child.exitstatus
        assert status is not None, "sdcli was killed by a signal"
        return status

    def screen(self) -> list[str]:
        screen = pyte.Screen(COLUMNS, LINES)
        pyte.ByteStream(screen).feed(self.output.getvalue())
        return [line.rstrip() for line in screen.display if line.strip()]


def editor(tmp_path: Path, *contents: str) -> str:
    """An $EDITOR that writes the next of `contents` into the file on each run."""
    plan = tmp_path / "editor-plan.json"
    plan.write_text(json.dumps(list(contents)), encoding="utf-8")
    script = tmp_path / "editor.py"
    script.write_text(
        "import json, sys\n"
        f"plan = {str(plan)!r}\n"
        "todo = json.load(open(plan, encoding='utf-8'))\n"
        "open(sys.argv[1], 'w', encoding='utf-8').write(todo.pop(0))\n"
        "json.dump(todo, open(plan, 'w', encoding='utf-8'))\n",
        encoding="utf-8",
    )
    return f'"{sys.executable}" "{script}"'


# --- shadowing ----------------------------------------------------------------------------------


def test_new_refuses_to_hide_a_builtin() -> None:
    user_preset("mine", 'extends = "chibi"\n')
    done = run_sdcli("presets", "new", "chibi", "--steps", "30")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "a built-in preset 'chibi' exists" in done.stderr
    assert "--extends chibi" in done.stderr and "--force" in done.stderr
    assert not (user_presets_dir() / "chibi.toml").exists()
    assert load_preset("mine").values["clip_skip"] == 2  # still chibi's
    # Building on the preset it hides keeps its settings; --force hides one on purpose.
    built = run_sdcli("presets", "new", "chibi", "--extends", "chibi", "--steps", "30")
    assert built.returncode == 0, built.stderr
    chibi = load_preset("chibi")
    assert chibi.values["steps"] == 30 and chibi.values["clip_skip"] == 2
    forced = run_sdcli("presets", "new", "sd15", "--steps", "9", "--force")
    assert forced.returncode == 0, forced.stderr
    assert load_preset("sd15").values == {"steps": 9}


def test_new_refuses_a_name_an_earlier_directory_already_uses(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "house.toml").write_text("steps = 4\n", encoding="utf-8")
    env = {"SDCLI_PRESETS_PATH": str(team)}
    done = run_sdcli("presets", "new", "house", "--steps", "8", env=env)
    assert done.returncode == 2
    assert "comes first on the search path" in done.stderr
    assert not (user_presets_dir() / "house.toml").exists()
    assert run_sdcli("presets", "new", "house", "--steps", "8", "--force", env=env).returncode == 0


# --- every problem at once ------------------------------------------------------------------------


def test_every_problem_of_a_preset_is_reported_at_once(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    path = user_preset(
        "messy",
        'extends = "nope"\nstepz = 20\ncfg_scale = "high"\nwidth = 500\n'
        "[params]\nx = nan\ny = inf\n",
    )
    done = run_sdcli("--url", fake_webui.url, "generate", "-p", "messy", "-o", str(tmp_path), "a")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"sdcli: error: {path}: ")
    for fragment in (
        "unknown key 'stepz' (did you mean 'steps'?)",
        "'cfg_scale' must be a number",
        "'width' must be a multiple of 8",
        "'params.x' must be a finite number",
        "'params.y' must be a finite number",
        "extends unknown preset 'nope'",
        "put it under [params]",
    ):
        assert fragment in line, fragment
    assert line.count(str(path)) == 1
    assert fake_webui.requests_to("/sdapi/v1/txt2img") == []


def test_a_broken_parent_is_reported_with_the_childs_own_problems() -> None:
    parent = user_preset("base", "steps = 0\n")
    child = user_preset("kid", 'extends = "base"\nwidht = 512\n')
    done = run_sdcli("presets", "show", "kid")
    assert done.returncode == 2
    assert f"{child}: unknown key 'widht'" in done.stderr
    assert f"{parent}: 'steps' must be between 1 and" in done.stderr


# --- TOML syntax: the line and a caret ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ('description = "ok"\ncfg_scale = = 7\n', "= 7"),
        ('steps = 20\ndescription = "日本語" x\n', "x"),  # wide characters before the column
        ("steps = 20\n\tsampler = @\n", "@"),  # a tab, shown as spaces
    ],
)
def test_a_toml_syntax_error_shows_the_line_with_a_caret(text: str, bad: str) -> None:
    path = user_preset("broken", text)
    term = Terminal("presets", "show", "broken")
    assert term.finish() == 2
    screen = term.screen()
    head = next(i for i, line in enumerate(screen) if line.startswith("sdcli: error:"))
    assert screen[head].startswith(f"sdcli: error: {path}: invalid TOML:")
    assert "(at line 2, column" in screen[head]
    quoted, caret = screen[head + 1], screen[head + 2]
    assert quoted.startswith("  2 | ")
    assert quoted.endswith(text.splitlines()[1].replace("\t", "    "))
    # The caret stands under the first character the parser refused, as the screen shows it.
    screen_column = caret.index("^")
    assert caret.rstrip() == caret[: screen_column + 1]
    shown = pyte.Screen(COLUMNS, 1)
    pyte.ByteStream(shown).feed(quoted.encode())
    cells = shown.buffer[0]
    assert cells[screen_column].data == bad[0]


# --- presets edit ---------------------------------------------------------------------------------


def test_edit_can_discard_a_broken_edit(tmp_path: Path) -> None:
    path = user_preset("mine", "steps = 3\n")
    term = Terminal("presets", "edit", "mine", env={"EDITOR": editor(tmp_path, "stepz = 4\n")})
    term.expect("What now?")
    term.answer("d")
    assert term.finish() == 0
    assert path.read_text(encoding="utf-8") == "steps = 3\n"
    screen = term.screen()
    assert any("unknown key 'stepz'" in line for line in screen)
    assert f"discarded the changes; {path} is as it was" in " ".join(screen)
    assert screen[-1] == str(path)


def test_edit_discarding_a_builtin_copy_removes_it(tmp_path: Path) -> None:
    term = Terminal("presets", "edit", "draft", env={"EDITOR": editor(tmp_path, "steps = 0\n")})
    term.expect("What now?")
    term.answer("discard")
    assert term.finish() == 0
    assert not (user_presets_dir() / "draft.toml").exists()
    assert load_preset("draft").source == "built-in"


def test_edit_again_then_fixed(tmp_path: Path) -> None:
    path = user_preset("mine", "steps = 3\n")
    env = {"EDITOR": editor(tmp_path, "steps = 0\n", "steps = 5\n")}
    term = Terminal("presets", "edit", "mine", env=env)
    term.expect("What now?")
    term.answer("")  # the default: edit again
    assert term.finish() == 0
    assert path.read_text(encoding="utf-8") == "steps = 5\n"
    assert term.screen()[-1] == str(path)


def test_edit_can_keep_a_broken_edit(tmp_path: Path) -> None:
    path = user_preset("mine", "steps = 3\n")
    term = Terminal("presets", "edit", "mine", env={"EDITOR": editor(tmp_path, "steps = 0\n")})
    term.expect("What now?")
    term.answer("k")
    assert term.finish() == 2
    assert path.read_text(encoding="utf-8") == "steps = 0\n"
    assert "saved with errors" in " ".join(term.screen())


def test_edit_of_an_unknown_preset_suggests_creating_it(tmp_path: Path) -> None:
    marker = tmp_path / "editor-ran"
    env = {"EDITOR": f"{sys.executable} -c \"open(r'{marker}', 'w')\""}
    done = run_sdcli("presets", "edit", "portrait", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("sdcli: error: unknown preset 'portrait'")
    assert "to create it: sdcli presets new portrait" in done.stderr
    assert not marker.exists()


def test_a_toml_file_cut_short_points_after_its_last_line() -> None:
    path = user_preset("cut", 'description = "ok"\nsteps = [\n\n')
    done = run_sdcli("presets", "show", "cut")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"sdcli: error: {path}: invalid TOML: Invalid value (at end of document)",
        "  2 | steps = [",
        "    |          ^",
    ]
