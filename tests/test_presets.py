"""Presets: built-ins, the search path, `extends`, validation messages, listing and saving."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdcli.config import builtin_presets_dir, user_presets_dir
from sdcli.errors import OutputError, PresetError
from sdcli.presets import (
    PRESET_KEYS,
    Preset,
    dumps_preset,
    find_preset,
    list_presets,
    load_preset,
    merge_presets,
    save_preset,
    search_path,
    validate_values,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

BUILTINS = ["chibi", "sd15", "sdxl", "draft"]

# The seed blog post ("[SD] Using SD A111 api with baisc api calls", 2023-12-30), copied by hand:
# its "Setting" section, its "Negative Prompt" section and the size/batch of its payload.
SEED_NEGATIVE = (
    "EasyNegative, (worst quality:1.4), (low quality:1.4),  extra fingers, fewer fingers, "
    "blurry, watermark, logo, text, error, blurry, inaccurate eyes, extra digit,fewer digits, "
    "bad anatomy, bad hands, username, words"
)
SEED_SETTINGS: dict[str, Any] = {
    "negative_prompt": SEED_NEGATIVE,
    "sampler": "DPM++ 2M",  # "Sampler: DPM++ 2M Karras"
    "scheduler": "Karras",
    "steps": 27,  # "Sampling steps: 27"
    "cfg_scale": 7,  # "CFG Scale: 7"
    "clip_skip": 2,  # "Clip skip: 2"
    "width": 512,  # payload "width": 512
    "height": 512,  # payload "height": 512
    "batch_size": 1,  # payload "batch_size": 1
    "batch_count": 1,  # "Batch count: 1"
}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SDCLI_HOME and no SDCLI_PRESETS_PATH: tests never see the real home."""
    monkeypatch.setenv("SDCLI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SDCLI_PRESETS_PATH", raising=False)
    return tmp_path / "home"


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def user(name: str, text: str) -> Path:
    return write(user_presets_dir(), name, text)


# --- built-ins -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_preset_loads(name: str) -> None:
    preset = load_preset(name)
    assert preset.source == "built-in"
    assert preset.path == builtin_presets_dir() / f"{name}.toml"
    assert preset.description
    assert validate_values(preset.values, where="test") == preset.values
    assert "model" not in preset.values  # a shipped preset must work on any server


def test_builtin_folder_holds_exactly_the_documented_presets() -> None:
    assert sorted(p.stem for p in builtin_presets_dir().glob("*.toml")) == sorted(BUILTINS)


@pytest.mark.parametrize(("key", "expected"), SEED_SETTINGS.items())
def test_chibi_matches_the_seed_post(key: str, expected: Any) -> None:
    value = load_preset("chibi").values[key]
    assert value == expected
    assert type(value) is type(expected)


def test_chibi_sets_nothing_beyond_the_seed_post() -> None:
    preset = load_preset("chibi")
    assert preset.values == SEED_SETTINGS
    assert "  extra fingers" in preset.values["negative_prompt"]  # the post's double space


def test_chibi_credits_the_post_and_names_its_model_without_setting_it() -> None:
    preset = load_preset("chibi")
    text = builtin_presets_dir().joinpath("chibi.toml").read_text(encoding="utf-8")
    assert "Using SD A111 api with baisc api calls" in preset.description
    assert "qteamixQ_gamma" in text
    assert "model" not in tomllib.loads(text)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sd15", {"width": 512, "height": 512, "steps": 25, "cfg_scale": 7}),
        ("sdxl", {"width": 1024, "height": 1024, "steps": 30, "cfg_scale": 6}),
        ("draft", {"width": 512, "height": 512, "steps": 12, "sampler": "Euler a"}),
    ],
)
def test_builtin_settings(name: str, expected: dict[str, Any]) -> None:
    values = load_preset(name).values
    assert {key: values[key] for key in expected} == expected
    if name != "draft":
        assert (values["sampler"], values["scheduler"]) == ("DPM++ 2M", "Karras")
        assert values["negative_prompt"]


# --- extends -------------------------------------------------------------------------------


def test_extends_chain_parent_first_child_wins() -> None:
    user(
        "base", 'description = "base"\nsteps = 20\nnegative_prompt = "x"\n[params]\na = 1\nb = 1\n'
    )
    user("mid", 'extends = "base"\nsteps = 30\n[params]\nb = 2\n')
    user("top", 'extends = "mid"\ndescription = "top"\ncfg_scale = 5.5\n[params]\nc = 3\n')
    preset = load_preset("top")
    assert preset.values == {
        "steps": 30,
        "negative_prompt": "x",
        "cfg_scale": 5.5,
        "params": {"a": 1, "b": 2, "c": 3},
    }
    assert preset.parents == ("mid", "base")
    assert preset.description == "top"
    assert load_preset("mid").description == ""  # descriptions are not inherited


def test_extends_cycle_names_the_chain() -> None:
    path = user("a", 'extends = "b"\n')
    user("b", 'extends = "a"\n')
    with pytest.raises(PresetError) as info:
        load_preset("a")
    assert "a -> b -> a" in str(info.value)
    assert str(user_presets_dir()) in str(info.value)
    assert path.exists()


def test_extends_itself_without_a_shadowed_preset_is_an_error() -> None:
    path = user("solo", 'extends = "solo"\n')
    with pytest.raises(PresetError, match="extends itself") as info:
        load_preset("solo")
    assert str(path) in str(info.value)


def test_extends_same_name_means_the_preset_it_shadows() -> None:
    user("chibi", 'extends = "chibi"\nsteps = 40\nmodel = "qteamixQ_gamma"\n')
    preset = load_preset("chibi")
    assert preset.source == "user"
    assert preset.values == {**SEED_SETTINGS, "steps": 40, "model": "qteamixQ_gamma"}
    assert preset.parents == ("chibi",)


def test_extends_missing_parent_names_the_file() -> None:
    path = user("child", 'extends = "chibbi"\n')
    with pytest.raises(PresetError) as info:
        load_preset("child")
    message = str(info.value)
    assert str(path) in message
    assert "chibbi" in message
    assert "did you mean 'chibi'?" in message


def test_extends_relative_path_is_relative_to_the_file(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere", "base", "steps = 9\n")
    child = write(tmp_path / "elsewhere", "child", 'extends = "./base.toml"\nwidth = 640\n')
    assert load_preset(str(child)).values == {"steps": 9, "width": 640}


# --- validation ----------------------------------------------------------------------------


def test_preset_keys_are_the_documented_ones() -> None:
    assert set(PRESET_KEYS) == {
        "description",
        "extends",
        "prompt_template",
        "negative_prompt",
        "sampler",
        "scheduler",
        "steps",
        "cfg_scale",
        "clip_skip",
        "width",
        "height",
        "seed",
        "batch_size",
        "batch_count",
        "model",
        "denoising_strength",
        "upscale",
        "resize_mode",
        "mask_blur",
        "inpaint_fill",
        "inpaint_area",
        "mask_padding",
        "invert_mask",
        "hires",
        "hr_scale",
        "hr_size",
        "hr_upscaler",
        "hr_steps",
        "vae",
        "styles",
        "refiner",
        "refiner_switch",
        "restore_faces",
        "tiling",
        "variation_seed",
        "variation_strength",
        "params",
    }


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("stpes", "steps"),
        ("cfg_scal", "cfg_scale"),
        ("sampler_name", "sampler"),
        ("n_iter", "batch_count"),
    ],
)
def test_unknown_key_names_file_and_suggests(key: str, suggestion: str) -> None:
    path = user("typo", f"{key} = 1\n")
    with pytest.raises(PresetError) as info:
        load_preset("typo")
    message = str(info.value)
    assert message.startswith(f"{path}: unknown key '{key}'")
    assert f"did you mean '{suggestion}'?" in message
    assert "[params]" in message


@pytest.mark.parametrize(
    ("line", "key", "expected", "got"),
    [
        ('steps = "20"', "steps", "an integer", "a string ('20')"),
        ("steps = true", "steps", "an integer", "a boolean (True)"),
        ("steps = 20.5", "steps", "an integer", "a float (20.5)"),
        ("seed = false", "seed", "an integer", "a boolean (False)"),
        ("width = 512.0", "width", "an integer", "a float (512.0)"),
        ('cfg_scale = "7"', "cfg_scale", "a number", "a string ('7')"),
        ("cfg_scale = true", "cfg_scale", "a number", "a boolean (True)"),
        ("negative_prompt = 1", "negative_prompt", "a string", "an integer (1)"),
        ("description = [1, 2]", "description", "a string", "an array"),
        ("params = 1", "params", "a table", "an integer (1)"),
        ("sampler = 2023-12-30", "sampler", "a string", "a date (datetime.date(2023, 12, 30))"),
    ],
)
def test_wrong_type_names_file_key_expected_and_got(
    line: str, key: str, expected: str, got: str
) -> None:
    path = user("bad", line + "\n")
    with pytest.raises(PresetError) as info:
        load_preset("bad")
    assert str(info.value) == f"{path}: '{key}' must be {expected}, got {got}"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("width = 500", "'width' must be a multiple of 8, got 500 (try 496 or 504)"),
        ("height = 4096", "'height' must be between 64 and 2048, got 4096"),
        ("clip_skip = 13", "'clip_skip' must be between 1 and 12, got 13"),
        ("clip_skip = 0", "'clip_skip' must be between 1 and 12, got 0"),
        ("steps = 0", "'steps' must be between 1 and 150, got 0"),
        ("batch_size = 0", "'batch_size' must be between 1 and 8, got 0"),
        ("batch_count = -1", "'batch_count' must be between 1 and 100, got -1"),
        ("seed = -2", "'seed' must be between -1 and 4294967295, got -2"),
        ("cfg_scale = -1", "'cfg_scale' must be between 0 and 30, got -1"),
        ("cfg_scale = nan", "'cfg_scale' must be a finite number, got nan"),
        # the web UI's own bounds: its sliders, and 32-bit seeds (issue 11)
        ("steps = 151", "'steps' must be between 1 and 150, got 151"),
        ("cfg_scale = 30.5", "'cfg_scale' must be between 0 and 30, got 30.5"),
        ("batch_size = 9", "'batch_size' must be between 1 and 8, got 9"),
        ("batch_count = 101", "'batch_count' must be between 1 and 100, got 101"),
        ("seed = 4294967296", "'seed' must be between -1 and 4294967295, got 4294967296"),
        ("seed = 1e20", "'seed' must be an integer, got a float (1e+20)"),
        ("params.cfg = inf", "'params.cfg' must be a finite number, got inf"),
        ("denoising_strength = 1.5", "'denoising_strength' must be between 0 and 1, got 1.5"),
        ('sampler = " "', "'sampler' must not be empty"),
        ('prompt_template = "no slot"', "'prompt_template' must contain {prompt}"),
        ("params.when = 2024-01-01T00:00:00", "'params.when' is a date-time"),
        ("params.x = [1, inf]", "'params.x[1]' must be a finite number"),
    ],
)
def test_out_of_range_values_are_errors(line: str, fragment: str) -> None:
    path = user("bad", line + "\n")
    with pytest.raises(PresetError) as info:
        load_preset("bad")
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


def test_valid_edge_values_pass() -> None:
    values = {
        "seed": -1,
        "width": 64,
        "height": 2048,
        "clip_skip": 12,
        "cfg_scale": 0,
        "denoising_strength": 1,
        "prompt_template": "masterpiece, {prompt}, {a|b}",
        "params": {"enable_hr": True, "alwayson_scripts": {"x": {"args": [1, "a", True]}}},
    }
    assert validate_values(values, where="t") == values


def test_all_problems_are_reported_at_once() -> None:
    user("bad", 'steps = "x"\nwidht = 512\nclip_skip = 99\n')
    with pytest.raises(PresetError) as info:
        load_preset("bad")
    message = str(info.value)
    assert "'steps'" in message
    assert "'widht' (did you mean 'width'?)" in message
    assert "'clip_skip'" in message
    assert "\n" not in message


def test_validate_values_for_flags_drops_none_and_names_the_flag() -> None:
    assert validate_values({"steps": 5, "seed": None}, where="--steps") == {"steps": 5}
    with pytest.raises(PresetError, match=r"^--steps: 'steps' must be an integer"):
        validate_values({"steps": True}, where="--steps")


def test_toml_syntax_error_names_file_and_line() -> None:
    path = user("broken", 'description = "ok"\nsteps = \n')
    with pytest.raises(PresetError) as info:
        load_preset("broken")
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML")
    assert "line 2" in message


def test_non_utf8_file_is_a_preset_error() -> None:
    user_presets_dir().mkdir(parents=True)
    (user_presets_dir() / "latin1.toml").write_bytes(b'description = "caf\xe9"\n')
    with pytest.raises(PresetError, match="not UTF-8"):
        load_preset("latin1")


# --- search path ---------------------------------------------------------------------------


def test_search_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "p1", tmp_path / "p2"
    monkeypatch.setenv("SDCLI_PRESETS_PATH", os.pathsep.join([str(first), "", str(second)]))
    assert search_path() == [
        ("path", first),
        ("path", second),
        ("user", user_presets_dir()),
        ("built-in", builtin_presets_dir()),
    ]


def test_first_hit_wins_and_list_shows_shadowing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "p1", tmp_path / "p2"
    monkeypatch.setenv("SDCLI_PRESETS_PATH", os.pathsep.join([str(first), str(second)]))
    user("x", "steps = 3\n")
    assert find_preset("x") == ("user", user_presets_dir() / "x.toml")
    write(second, "x", "steps = 2\n")
    assert load_preset("x").values == {"steps": 2}
    write(first, "x", "steps = 1\n")
    user("chibi", 'description = "mine"\n')
    assert find_preset("x") == ("path", first / "x.toml")
    assert load_preset("x").values == {"steps": 1}
    rows = {row.name: row for row in list_presets()}
    assert rows["x"].source == "path"
    assert rows["x"].shadows == ("path", "user")
    assert (rows["chibi"].source, rows["chibi"].description) == ("user", "mine")
    assert rows["chibi"].shadows == ("built-in",)
    assert rows["sdxl"].shadows == ()


def test_missing_or_odd_search_directories_hold_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("steps = 1\n")
    odd = [tmp_path / "missing", tmp_path / "a-file", tmp_path / "a-file" / "below"]
    monkeypatch.setenv("SDCLI_PRESETS_PATH", os.pathsep.join(map(str, odd)))
    assert [row.name for row in list_presets()] == sorted(BUILTINS)
    assert find_preset("draft")[0] == "built-in"


def test_a_path_to_a_toml_file_is_loaded_directly(tmp_path: Path) -> None:
    path = write(tmp_path / "anywhere", "mine", 'description = "d"\nsteps = 8\n')
    assert find_preset(str(path)) == ("file", path)
    preset = load_preset(str(path))
    assert (preset.name, preset.source, preset.path) == ("mine", "file", path)
    assert (preset.values, preset.description) == ({"steps": 8}, "d")


def test_missing_toml_path_suggests_the_preset_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PresetError) as info:
        find_preset("chibi.toml")
    assert "preset file not found" in str(info.value)
    assert info.value.hint == "to use the preset named 'chibi', leave out .toml"


def test_unknown_name_suggests_and_hints_at_list() -> None:
    with pytest.raises(PresetError) as info:
        load_preset("sdxll")
    assert info.value.message == "unknown preset 'sdxll' (did you mean 'sdxl'?)"
    assert info.value.hint is not None
    assert "sdcli presets list" in info.value.hint


def test_list_never_raises_on_broken_files() -> None:
    user("syntax", 'description = "half\n')
    user("types", 'description = "kept"\nsteps = "many"\n')
    user("orphan", 'extends = "nowhere"\n')
    user("fine", 'description = "good"\n')
    rows = {row.name: row for row in list_presets()}
    assert set(rows) == {*BUILTINS, "syntax", "types", "orphan", "fine"}
    assert rows["syntax"].error is not None
    assert "invalid TOML" in rows["syntax"].error
    assert rows["types"].error is not None
    assert "'steps' must be an integer" in rows["types"].error
    assert rows["types"].description == "kept"
    assert rows["orphan"].error is not None
    assert "nowhere" in rows["orphan"].error
    assert rows["fine"].error is None
    assert rows["fine"].as_dict()["description"] == "good"
    assert [row.name for row in list_presets()] == sorted(rows)


# --- merging -------------------------------------------------------------------------------


def test_merge_later_wins_and_params_merge_by_key() -> None:
    a = Preset("a", "user", None, {"steps": 1, "sampler": "Euler", "params": {"x": 1, "y": 1}})
    b = Preset("b", "user", None, {"steps": 2, "params": {"y": 2, "z": 2}})
    merged = merge_presets([a, b])
    assert merged == {"steps": 2, "sampler": "Euler", "params": {"x": 1, "y": 2, "z": 2}}
    merged["params"]["x"] = 99
    assert a.values["params"] == {"x": 1, "y": 1}  # the merge is a copy
    assert merge_presets([]) == {}


# --- saving --------------------------------------------------------------------------------


def test_save_then_load_round_trips() -> None:
    values = {
        "params": {"enable_hr": True, "hr_scale": 1.5},
        "steps": 22,
        "description": "mine",
        "negative_prompt": 'with "quotes" and \\ backslash',
        "extends": "chibi",
    }
    path = save_preset("mine", values)
    assert path == user_presets_dir() / "mine.toml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith('description = "mine"\nextends = "chibi"\n')
    assert text.rstrip().endswith("hr_scale = 1.5")
    preset = load_preset("mine")
    assert preset.values == {
        **SEED_SETTINGS,
        "steps": 22,
        "negative_prompt": values["negative_prompt"],
        "params": {"enable_hr": True, "hr_scale": 1.5},
    }
    assert [p.name for p in user_presets_dir().iterdir()] == ["mine.toml"]


def test_save_refuses_to_overwrite_without_force() -> None:
    save_preset("mine", {"steps": 1})
    with pytest.raises(OutputError, match="already exists") as info:
        save_preset("mine", {"steps": 2})
    assert info.value.hint is not None
    assert "--force" in info.value.hint
    assert load_preset("mine").values == {"steps": 1}
    save_preset("mine", {"steps": 2}, force=True)
    assert load_preset("mine").values == {"steps": 2}


@pytest.mark.parametrize(
    "name", ["", "../evil", "a/b", ".hidden", "-x", "a b", "con", "x.toml", "é"]
)
def test_save_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(PresetError, match="invalid preset name"):
        save_preset(name, {"steps": 1})
    assert not user_presets_dir().exists()


def test_save_validates_before_writing() -> None:
    with pytest.raises(PresetError, match="'steps' must be an integer"):
        save_preset("mine", {"steps": "1"})
    with pytest.raises(PresetError, match="extends unknown preset 'nope'"):
        save_preset("mine", {"extends": "nope"})
    assert not (user_presets_dir() / "mine.toml").exists()


def test_save_refuses_a_cycle() -> None:
    user("other", 'extends = "mine"\n')
    with pytest.raises(PresetError, match="mine -> other -> mine"):
        save_preset("mine", {"extends": "other"})
    assert not (user_presets_dir() / "mine.toml").exists()


def test_dumps_preset_key_order() -> None:
    text = dumps_preset({"params": {"a": 1}, "width": 512, "description": "d", "steps": 3})
    assert text == 'description = "d"\nsteps = 3\nwidth = 512\n\n[params]\na = 1\n'
    assert tomllib.loads(text) == {"description": "d", "steps": 3, "width": 512, "params": {"a": 1}}


def test_importing_presets_does_not_import_toml_libraries() -> None:
    lazy = "{'tomli_w', 'tomllib', 'tomli', 'difflib'}"
    code = f"import sys, sdcli.presets; print(sorted({lazy} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_extends_merges_nested_params_like_repeated_presets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCLI_PRESETS_PATH", str(tmp_path))
    (tmp_path / "base.toml").write_text(
        '[params.override_settings]\nsd_vae = "vae.pt"\n', encoding="utf-8"
    )
    (tmp_path / "child.toml").write_text(
        'extends = "base"\n[params.override_settings]\neta_noise_seed_delta = 31337\n',
        encoding="utf-8",
    )
    from sdcli.presets import load_preset

    assert load_preset("child").values["params"]["override_settings"] == {
        "sd_vae": "vae.pt",
        "eta_noise_seed_delta": 31337,
    }
