"""The core user paths against every server flavour the fake imitates (fake_profiles).

Each flavour differs where the real ones do (webui-api.md §6, §7, §9): sampler naming, the
`scheduler` field, error bodies, task ids, lazy model loads. A test here runs once per flavour;
what a flavour must do differently is spelled out in the test, not hidden in the fixture.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from sdcli.pngmeta import get_parameters, read_parameters_from_file
from sdcli.testing.fake_validate import request_fields
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import Recorder, error_line, sdcli, start_run, warnings

PROFILES = ["a1111", "a1111-nowebui", "a1111-1.8", "forge", "sdnext"]
TXT2IMG = "/sdapi/v1/txt2img"
# SD.Next's titles have no extension and their own hashes (captured); its names keep the folder
TITLES = {
    "a1111": {
        "counterfeit": "anime/counterfeitV30_v30.safetensors [cbfba64e66]",
        "random": "random-sd15.safetensors [6d338e2388]",
        "qteamix": "qteamixQ_gamma.safetensors [58174ec2a4]",
    },
    "sdnext": {
        "counterfeit": "anime/counterfeitV30_v30 [efa67557bb]",
        "random": "randomSD15 [37f45461fe]",
        "qteamix": "qteamixQ_gamma [1b9a98fd9d]",
    },
}
MODEL_NAMES = {"a1111": "counterfeitV30_v30", "sdnext": "anime/counterfeitV30_v30"}
SDNEXT_500 = json.loads(
    (Path(__file__).parent / "fixtures" / "sdnext" / "basics.json").read_text(encoding="utf-8")
)[3]["response"]["body"]


def family(fake: FakeWebUI) -> str:
    return fake.profile.family


def title(fake: FakeWebUI, which: str) -> str:
    return TITLES[family(fake)][which]


@pytest.fixture(params=PROFILES)
def any_webui(
    request: pytest.FixtureRequest, make_fake_webui: Callable[..., FakeWebUI]
) -> FakeWebUI:
    """A running fake of each flavour in turn: A1111 1.10 (UI, API only), 1.8, Forge, SD.Next."""
    return make_fake_webui(profile=request.param)


def txt2img_bodies(fake: FakeWebUI) -> list[dict[str, Any]]:
    return [q.json for q in fake.requests_to(TXT2IMG)]


def fields_of(fake: FakeWebUI) -> set[str]:
    """The request fields this flavour's txt2img knows; any other key is silently dropped."""
    return {f.name for f in request_fields("txt2img", fake.profile)}


# --- generate ----------------------------------------------------------------------------------


def test_chibi_preset_sends_what_this_flavour_understands(
    any_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = sdcli(any_webui, "generate", "-p", "chibi", "1boy, chibi", "-o", str(tmp_path))
    assert r.exit_code == 0, r.stderr
    (body,) = txt2img_bodies(any_webui)
    assert (body["steps"], body["cfg_scale"], body["width"], body["height"]) == (27, 7, 512, 512)
    assert None not in body.values()
    # Nothing the user asked for may be silently dropped by this flavour.
    assert set(body) <= fields_of(any_webui), set(body) - fields_of(any_webui)
    name = any_webui.profile.name
    if name == "a1111-1.8":
        assert body["sampler_name"] == "DPM++ 2M Karras" and "scheduler" not in body
    elif name == "sdnext":
        assert body["sampler_name"] == "DPM++ 2M" and "scheduler" not in body
        # SD.Next honours only its own field; it ignores the setting override
        assert body["clip_skip"] == 2 and "override_settings" not in body
        (warning,) = warnings(r.stderr)
        assert "SD.Next cannot apply scheduler 'Karras' per request" in warning
        assert '{"schedulers_sigma": "karras"}' in warning
    else:
        assert (body["sampler_name"], body["scheduler"]) == ("DPM++ 2M", "Karras")
        assert "clip_skip" not in body
        assert body["override_settings"]["CLIP_stop_at_last_layers"] == 2
    if name != "sdnext":
        assert warnings(r.stderr) == []
    saved = Path(r.stdout.strip())
    text = read_parameters_from_file(saved)
    assert text is not None and "Size: 512x512" in text
    if name == "sdnext":  # JPEG, as the server encoded it; its own key for clip skip
        assert saved.suffix == ".jpg" and "CLiP-skip: 2" in text
    else:
        assert saved.suffix == ".png" and "Clip skip: 2" in text
        assert get_parameters(saved.read_bytes()) == text


def test_model_per_request_is_the_exact_title_and_is_used(
    any_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = sdcli(any_webui, "generate", "--model", "counterfeit", "--json", "x", "-o", str(tmp_path))
    assert r.exit_code == 0, r.stderr
    (body,) = txt2img_bodies(any_webui)
    assert body["override_settings"]["sd_model_checkpoint"] == title(any_webui, "counterfeit")
    assert json.loads(r.stdout)["model"] == MODEL_NAMES[family(any_webui)]
    assert warnings(r.stderr) == []


def test_unknown_sampler_exits_2_and_nothing_is_generated(
    any_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = sdcli(any_webui, "generate", "--sampler", "Euler b", "x", "-o", str(tmp_path))
    assert r.exit_code == 2
    assert "no sampler 'Euler b'" in r.stderr and "did you mean 'Euler a'" in r.stderr
    assert r.stdout == ""
    assert any_webui.requests_to(TXT2IMG) == []
    assert list(tmp_path.iterdir()) == []


# --- set-model, models, samplers -----------------------------------------------------------------


def test_set_model_is_read_back(any_webui: FakeWebUI, tmp_path: Path) -> None:
    counterfeit = title(any_webui, "counterfeit")
    r = sdcli(any_webui, "set-model", "counterfeit")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == counterfeit + "\n"
    assert any_webui.options["sd_model_checkpoint"] == counterfeit
    if any_webui.profile.name == "forge":
        # Forge only records the choice; the weights load with the next generation.
        assert any_webui.current_model == title(any_webui, "random")
    else:
        assert any_webui.current_model == counterfeit
    g = sdcli(any_webui, "generate", "--steps", "2", "--json", "x", "-o", str(tmp_path))
    assert g.exit_code == 0, g.stderr
    assert json.loads(g.stdout)["model"] == MODEL_NAMES[family(any_webui)]
    assert any_webui.current_model == counterfeit


def test_a_model_load_that_fails_is_reported(any_webui: FakeWebUI) -> None:
    if any_webui.profile.lazy_model_load:
        # Forge answers before loading anything: what it records is what it reads back.
        r = sdcli(any_webui, "set-model", "qteamix")
        assert r.exit_code == 0, r.stderr
        return
    any_webui.fail_next_model_load()
    r = sdcli(any_webui, "set-model", "qteamix")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert f"did not load {title(any_webui, 'qteamix')!r}" in r.stderr
    if family(any_webui) == "sdnext":
        # SD.Next keeps the option but loads nothing: /checkpoint says so
        assert any_webui.options["sd_model_checkpoint"] == title(any_webui, "qteamix")
        assert "no model is loaded" in r.stderr
        assert any_webui.requests_to("/sdapi/v1/checkpoint")


def test_models_lists_every_checkpoint_and_marks_the_loaded_one(any_webui: FakeWebUI) -> None:
    r = sdcli(any_webui, "models", "--json")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 6
    assert [row["title"] for row in rows if row["current"]] == [title(any_webui, "random")]
    names = {row["name"] for row in rows}
    if family(any_webui) == "sdnext":
        assert {"anime/counterfeitV30_v30", "dreamshaper_8"} <= names
    else:
        assert {"anime_counterfeitV30_v30", "dreamshaper_8"} <= names


def test_samplers_and_what_this_flavour_says_about_schedulers(any_webui: FakeWebUI) -> None:
    r = sdcli(any_webui, "samplers", "--json")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    names = [row["name"] for row in rows if row["kind"] == "sampler"]
    labels = [row["label"] for row in rows if row["kind"] == "scheduler"]
    assert "DPM++ 2M" in names and "Euler a" in names
    plain = sdcli(any_webui, "samplers")
    name = any_webui.profile.name
    if name == "a1111-1.8":
        assert labels == []
        assert "DPM++ 2M Karras" in names
        assert "no /schedulers (web UI before 1.9.1)" in plain.stderr
    elif name == "sdnext":
        assert labels == []  # its /schedulers answers 500: not asked
        assert "DPM++ 2M Karras" not in names and len(names) == 114
        assert "its setting schedulers_sigma picks it" in plain.stderr
        assert any_webui.requests_to("/sdapi/v1/schedulers") == []
    else:
        assert "Karras" in labels
        assert plain.stderr == ""


# --- info --------------------------------------------------------------------------------------

EXPECTED_INFO = {
    "a1111": ("a1111", "ui", "v1.10.1", "AUTOMATIC1111 (UI mode)"),
    "a1111-nowebui": (
        "a1111",
        "api-only",
        None,
        "AUTOMATIC1111 1.9.1 or later (API only, --nowebui)",
    ),
    "a1111-1.8": ("a1111", "ui", "v1.8.0", "AUTOMATIC1111 (UI mode)"),
    "forge": ("forge", "ui", "f2.0.1v1.10.1", "Forge (UI mode)"),
    # SD.Next always serves its UI, though it has no /internal/ping
    "sdnext": ("sdnext", "ui", "2026-07-23 (058a7f0cf, master)", "SD.Next (UI mode)"),
}


def test_info_names_the_flavour_and_version(any_webui: FakeWebUI) -> None:
    flavour, mode, version, described = EXPECTED_INFO[any_webui.profile.name]
    r = sdcli(any_webui, "info", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["flavour"], data["mode"], data["version"]) == (flavour, mode, version)
    # Cheap: a handful of GETs, none of them asked twice.
    asked = Counter((q.method, q.path) for q in any_webui.requests)
    assert set(asked.values()) == {1}, asked
    assert len(asked) <= 9
    any_webui.clear_requests()
    table = dict(line.split("\t", 1) for line in sdcli(any_webui, "info").stdout.splitlines())
    assert table["flavour"] == described


# --- errors --------------------------------------------------------------------------------------


def one_error_line(stderr: str) -> str:
    line = error_line(stderr, alone=True)
    assert len(stderr.splitlines()) == 1, stderr
    assert "{" not in line and "[" not in line, line  # no raw JSON body
    return line


# (what to --set, the line sdcli prints, the keys of the body each error style sends)
ERRORS = [
    (
        "override_settings.no_such_option=1",
        "the server failed (500): KeyError: 'no_such_option'",
        {
            "webui": {"error", "detail", "body", "errors"},
            "fastapi": {"error", "detail", "body", "message"},
            "sdnext": {"error", "code", "detail", "body", "errors"},
        },
    ),
    (
        "script_name=nope",
        "the server refused the request (422): Script 'nope' not found",
        {
            "webui": {"error", "detail", "body", "errors"},
            "fastapi": {"detail"},
            "sdnext": {"error", "code", "detail", "body", "errors"},
        },
    ),
]


@pytest.mark.parametrize(("setting", "line", "shapes"), ERRORS, ids=["crash", "http-exception"])
def test_each_flavours_error_body_is_one_clean_line(
    any_webui: FakeWebUI,
    tmp_path: Path,
    setting: str,
    line: str,
    shapes: dict[str, set[str]],
) -> None:
    if family(any_webui) == "sdnext":
        # SD.Next skips an unknown override and an unknown script without a word (source): its
        # errors come from an unknown sampler, and a 500 with many lines (captured)
        if setting.startswith("override_settings"):
            any_webui.fail(TXT2IMG, 500, body=SDNEXT_500, times=2)
            line = "the server failed (500): ResponseValidationError: 23 validation errors"
        else:
            line = "the server refused the request (404): Sampler not found"
        setting = "sampler_name=Nope"
    key, _, value = setting.partition("=")
    raw = {"prompt": "x", "steps": 2}
    if "." in key:
        raw["override_settings"] = {key.split(".")[1]: 1}
    else:
        raw[key] = value
    answer = requests.post(any_webui.url + TXT2IMG, json=raw, timeout=30)
    assert set(answer.json()) == shapes[any_webui.profile.error_style]
    r = sdcli(any_webui, "generate", "--steps", "2", "--set", setting, "x", "-o", str(tmp_path))
    assert r.exit_code == 1
    assert one_error_line(r.stderr) == f"sdcli: error: {line}"
    assert list(tmp_path.iterdir()) == []


def test_each_flavours_validation_error_is_one_clean_line(
    any_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = sdcli(any_webui, "generate", "--set", "steps=abc", "x", "-o", str(tmp_path))
    assert r.exit_code == 1
    message = {
        "pydantic1": "steps: value is not a valid integer",
        "pydantic2": "steps: Input should be a valid integer, unable to parse string as an integer",
    }[any_webui.profile.validation_style]
    assert one_error_line(r.stderr) == (
        f"sdcli: error: the server rejected the request (422): {message}"
    )


def test_an_injected_500_in_this_flavours_shape_is_one_clean_line(
    any_webui: FakeWebUI, tmp_path: Path
) -> None:
    any_webui.fail(TXT2IMG, 500)
    r = sdcli(any_webui, "generate", "--steps", "2", "x", "-o", str(tmp_path))
    assert r.exit_code == 1
    assert one_error_line(r.stderr) == (
        "sdcli: error: the server failed (500): RuntimeError: injected failure"
    )


# --- progress ----------------------------------------------------------------------------------


def test_progress_shows_our_steps_on_every_flavour(any_webui: FakeWebUI, tmp_path: Path) -> None:
    any_webui.pause_at_step(2)
    recorder = Recorder(lambda s: not s.queued and s.step == 2)
    thread, out = start_run(any_webui, recorder, tmp_path, steps=5)
    seen = recorder.seen.wait(10)
    any_webui.resume()
    thread.join(30)
    assert seen, recorder.snapshots[-3:]
    snap = next(s for s in recorder.snapshots if s.step == 2)
    assert (snap.queued, snap.steps) == (False, 5)
    assert len(out[0].saved) == 1
    internal = any_webui.requests_to("/internal/progress")
    name = any_webui.profile.name
    if name == "a1111-nowebui":
        assert len(internal) == 1  # probed once (404), then the global progress only
    elif name == "sdnext":
        # No force_task_id there: its /internal/progress would never know our task.
        assert internal == []
        assert "force_task_id" not in txt2img_bodies(any_webui)[0]
    else:
        sent = txt2img_bodies(any_webui)[0]["force_task_id"]
        assert {q.json["id_task"] for q in internal} == {sent}
    if name in ("a1111-nowebui", "sdnext"):
        assert any_webui.requests_to("/sdapi/v1/progress")
