"""Bad local input: every case exits 2 with one line naming the file, key or flag, and sends
nothing that generates (most send nothing at all)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import error_line, generate, invoke

TXT2IMG = "/sdapi/v1/txt2img"
# the lists, and the flavour (SD.Next has /version: no per-request schedule there)
LOOKUPS = {
    "/sdapi/v1/samplers",
    "/sdapi/v1/schedulers",
    "/sdapi/v1/sd-models",
    "/sdapi/v1/version",
}


@pytest.fixture
def presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "presets"
    directory.mkdir()
    monkeypatch.setenv("SDCLI_PRESETS_PATH", str(directory))
    return directory


# --- presets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('description = "x"\nsteps = 20\ncfg_scale = = 7\n', ["invalid TOML", "line 3"]),
        ("stepz = 20\n", ["'stepz'", "did you mean 'steps'"]),
        ('steps = "twenty"\n', ["steps", "twenty"]),
        ("cfg_scale = true\n", ["cfg_scale"]),
        ("width = 513\n", ["width", "513"]),
        ("clip_skip = 13\n", ["clip_skip", "13"]),
        ("steps = 0\n", ["steps"]),
        ('prompt_template = "masterpiece"\n', ["prompt_template", "{prompt}"]),
        ("[params]\nsteps = 1\nseed = null_is_not_toml\n", ["invalid TOML", "line 3"]),
        ('extends = "no-such-parent"\n', ["no-such-parent"]),
    ],
)
def test_broken_preset_file_names_the_file_and_sends_nothing(
    fake_webui: FakeWebUI, presets: Path, tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = presets / "broken.toml"
    path.write_text(text, encoding="utf-8")
    r = generate(fake_webui, tmp_path / "out", "-p", "broken", "x")
    assert r.exit_code == 2
    line = error_line(r.stderr, alone=True)
    assert str(path) in line
    for fragment in fragments:
        assert fragment in line
    assert fake_webui.requests == []
    assert not (tmp_path / "out").exists()


def test_extends_cycle_is_named(fake_webui: FakeWebUI, presets: Path, tmp_path: Path) -> None:
    (presets / "a.toml").write_text('extends = "b"\nsteps = 3\n', encoding="utf-8")
    (presets / "b.toml").write_text('extends = "a"\nsteps = 4\n', encoding="utf-8")
    r = generate(fake_webui, tmp_path, "-p", "a", "x")
    assert r.exit_code == 2
    line = error_line(r.stderr, alone=True)
    assert "'extends' makes a cycle: a -> b -> a" in line and str(presets / "b.toml") in line
    assert fake_webui.requests == []


def test_unknown_preset(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "-p", "no-such-preset", "x")
    assert r.exit_code == 2
    assert "no-such-preset" in error_line(r.stderr, alone=True)
    assert fake_webui.requests == []


def test_preset_that_is_not_utf8(fake_webui: FakeWebUI, presets: Path, tmp_path: Path) -> None:
    path = presets / "latin1.toml"
    path.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    r = generate(fake_webui, tmp_path, "-p", "latin1", "x")
    assert r.exit_code == 2
    assert f"{path}: not UTF-8" in error_line(r.stderr, alone=True)
    assert fake_webui.requests == []


# --- flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # the value flags (--steps, --size…): tests/test_value_flags.py, for presets new too
        (["--set", "oops"], "--set 'oops'"),
        (["--set", "=3"], "--set '=3'"),
        (["--set", "override_settings..x=1"], "--set"),
        (["--set", "steps=null"], "--set steps=null"),
        (["--name", "{nope}"], "{nope}"),
        (["--name", "{seed"], "bad file name template"),
        (["--prompts-file", "/nonexistent/prompts.txt"], "/nonexistent/prompts.txt"),
        (["--from-image", "/nonexistent/image.png"], "/nonexistent/image.png"),
    ],
)
def test_bad_flag_values_exit_2_and_send_nothing(
    fake_webui: FakeWebUI, tmp_path: Path, args: list[str], fragment: str
) -> None:
    words = [] if "--prompts-file" in args or "--from-image" in args else ["x"]
    r = generate(fake_webui, tmp_path / "out", *args, *words)
    assert r.exit_code == 2, r.stderr
    assert fragment in error_line(r.stderr, alone=True)
    assert fake_webui.requests == []
    assert not (tmp_path / "out").exists()


def test_from_image_that_is_not_an_image(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("just text", encoding="utf-8")
    r = generate(fake_webui, tmp_path / "out", "--from-image", str(fake))
    assert r.exit_code == 2
    assert str(fake) in error_line(r.stderr, alone=True)
    assert fake_webui.requests == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--sampler", "Euler b"], "no sampler 'Euler b'"),
        (["--sampler", "Euler a", "--scheduler", "Karras-ish"], "Karras-ish"),
        (["--model", "no-such-checkpoint"], "no-such-checkpoint"),
    ],
)
def test_unknown_names_exit_2_after_lookups_only(
    fake_webui: FakeWebUI, tmp_path: Path, args: list[str], fragment: str
) -> None:
    r = generate(fake_webui, tmp_path / "out", *args, "x")
    assert r.exit_code == 2, r.stderr
    assert fragment in error_line(r.stderr, alone=True)
    sent = fake_webui.requests
    assert sent, "the names are checked against the server's lists"
    assert {(req.method, req.path) for req in sent} <= {("GET", path) for path in LOOKUPS}
    assert not (tmp_path / "out").exists()


def test_unknown_sampler_in_a_preset_is_caught_before_generating(
    fake_webui: FakeWebUI, presets: Path, tmp_path: Path
) -> None:
    (presets / "typo.toml").write_text('sampler = "DPM++ 2M Karas"\n', encoding="utf-8")
    r = generate(fake_webui, tmp_path, "-p", "typo", "x")
    assert r.exit_code == 2
    assert "DPM++ 2M Karas" in error_line(r.stderr, alone=True)
    assert fake_webui.requests_to(TXT2IMG) == []


# --- prompts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (["-"], "", "no prompt on stdin"),
        (["-"], "\n  \n# only a comment\n", "no prompt on stdin"),
        (["-"], b"caf\xe9\n", "stdin is not valid UTF-8"),
        ([], None, "give a prompt"),
    ],
)
def test_missing_or_unreadable_prompts(
    fake_webui: FakeWebUI, tmp_path: Path, args: list[str], stdin: Any, fragment: str
) -> None:
    r = generate(fake_webui, tmp_path, *args, input=stdin)
    assert r.exit_code == 2
    assert fragment in error_line(r.stderr, alone=True)
    assert fake_webui.requests == []


@pytest.mark.parametrize(
    ("content", "fragment"), [(b"", "no prompt in --prompts-file"), (b"\xff\xfe", "UTF-8")]
)
def test_bad_prompts_file(
    fake_webui: FakeWebUI, tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    r = generate(fake_webui, tmp_path, "--prompts-file", str(path))
    assert r.exit_code == 2
    line = error_line(r.stderr, alone=True)
    assert fragment in line and str(path) in line
    assert fake_webui.requests == []


def test_prompt_words_and_a_prompts_file_together(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("a\n", encoding="utf-8")
    r = generate(fake_webui, tmp_path, "--prompts-file", str(path), "x")
    assert r.exit_code == 2
    assert "not both" in error_line(r.stderr, alone=True)
    assert fake_webui.requests == []


# --- settings: URL, credentials, timeout, config file ---------------------------------------


def settings_run(global_args: Sequence[str], tmp_path: Path) -> Any:
    return invoke([*global_args, "generate", "x", "-o", str(tmp_path)])


@pytest.mark.parametrize(
    ("global_args", "fragment"),
    [
        (["--url", "http://[::1"], "invalid server URL"),
        (["--url", "http://bad host:7860"], "invalid server URL"),
        (["--url", "ftp://example.com"], "invalid server URL"),
        (["--url", "http://127.0.0.1:99999"], "invalid port"),
        (["--timeout", "soon"], "--timeout must be a number of seconds"),
        (["--timeout", "-1"], "--timeout must be a number of seconds above 0"),
        (["--auth", "no-colon"], "--auth must look like USER:PASS"),
    ],
)
def test_bad_settings_exit_2(
    fake_webui: FakeWebUI, tmp_path: Path, global_args: list[str], fragment: str
) -> None:
    if "--url" not in global_args:
        global_args = ["--url", fake_webui.url, *global_args]
    r = settings_run(global_args, tmp_path)
    assert r.exit_code == 2, r.stderr
    assert fragment in error_line(r.stderr, alone=True)
    assert fake_webui.requests == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('url = "http://127.0.0.1:7860\n', "is not valid TOML"),
        ("colour = true\n", "unknown key 'colour'"),
        ('timeout = "forever"\n', "config key 'timeout' must be a number"),
    ],
)
def test_bad_config_file_is_named(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path, text: str, fragment: str
) -> None:
    config = isolated_sdcli_home / "config.toml"
    config.write_text(text, encoding="utf-8")
    r = settings_run(["--url", fake_webui.url], tmp_path)
    assert r.exit_code == 2, r.stderr
    line = error_line(r.stderr, alone=True)
    assert fragment in line
    assert str(config) in line or "config key" in line
    assert fake_webui.requests == []


def test_bad_retry_backoff_environment(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCLI_RETRY_BACKOFF", "-1")
    r = generate(fake_webui, tmp_path, "x")
    assert r.exit_code == 2
    assert "SDCLI_RETRY_BACKOFF must be a number of seconds, not '-1'" in error_line(
        r.stderr, alone=True
    )
    assert fake_webui.requests == []
