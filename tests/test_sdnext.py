"""sdcli against SD.Next as it is today (the fake's sdnext profile, rebuilt from live captures):
JPEG answers, its infotext layout, hires fields, a model that failed to load, its error bodies."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from sdcli.infotext import format_infotext, parse_infotext
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import sdcli, warnings

CAPTURES = Path(__file__).parent / "fixtures" / "sdnext"
TXT2IMG = "/sdapi/v1/txt2img"
SMALL = ("--steps", "2", "-W", "64", "-H", "64", "--seed", "7")
MakeFake = Callable[..., FakeWebUI]


@pytest.fixture
def sdnext(make_fake_webui: MakeFake) -> FakeWebUI:
    return make_fake_webui(profile="sdnext")


def captured_infotexts() -> list[str]:
    texts = []
    for path in sorted(CAPTURES.glob("txt2img-*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            body = entry["response"]["body"]
            info = body.get("info") if isinstance(body, dict) else None
            if isinstance(info, str) and info:
                texts += json.loads(info)["infotexts"]
    return texts


# --- infotext ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", captured_infotexts())
def test_sdnext_infotext_keeps_its_template_lines_apart(text: str) -> None:
    info = parse_infotext(text)
    assert format_infotext(info) == text  # byte for byte, the empty "Negative prompt: " too
    assert "Template:" not in info.negative_prompt and "\n" not in info.negative_prompt
    assert info.template is not None and info.params["App"] == "SD.Next"
    assert info.steps is not None and info.seed == 7


def test_the_clip_skip_of_an_sdnext_infotext_is_read() -> None:
    (text,) = [t for t in captured_infotexts() if "CLiP-skip" in t]
    assert parse_infotext(text).clip_skip == 2


# --- images: JPEG as the server encoded it -----------------------------------------------------


def test_a_jpeg_answer_is_saved_as_sent_and_read_back(sdnext: FakeWebUI, tmp_path: Path) -> None:
    # --no-dynamic: the template goes to SD.Next, which draws from it itself (its Template line)
    r = sdcli(
        sdnext, "generate", *SMALL, "--clip-skip", "2", "--no-dynamic", "a {cat|dog}",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    saved = Path(r.stdout.strip())
    assert saved.suffix == ".jpg"
    sent = sdnext.requests_to(TXT2IMG)[0].json
    again = requests.post(sdnext.url + TXT2IMG, json=sent, timeout=30).json()
    assert saved.read_bytes() == base64.b64decode(again["images"][0])  # never re-encoded
    shown = sdcli(sdnext, "info", str(saved))
    assert shown.exit_code == 0, shown.stderr
    rows = dict(line.split("\t", 1) for line in shown.stdout.splitlines())
    assert rows["Prompt"] == "a cat" and rows["Negative prompt"] == ""
    assert rows["Template"] == "a {cat|dog}" and rows["CLiP-skip"] == "2"
    doc = json.loads(sdcli(sdnext, "info", "--json", str(saved)).stdout)
    assert doc["template"] == "a {cat|dog}" and doc["parameters"]["CLiP-skip"] == 2


def test_from_image_maps_sdnext_keys_back(sdnext: FakeWebUI, tmp_path: Path) -> None:
    first = sdcli(
        sdnext, "generate", *SMALL, "--sampler", "DPM++ 2M", "--clip-skip", "2",
        "--set", "enable_hr=true", "a cat", "-o", str(tmp_path / "a"),
    )  # fmt: skip
    assert first.exit_code == 0, first.stderr
    image = first.stdout.strip()
    again = sdcli(sdnext, "generate", "--from-image", image, "-o", str(tmp_path / "b"))
    assert again.exit_code == 0, again.stderr
    original, rerun = (q.json for q in sdnext.requests_to(TXT2IMG))
    for key in ("prompt", "seed", "steps", "width", "height", "sampler_name", "clip_skip"):
        assert rerun[key] == original[key], key
    assert rerun["enable_hr"] is True and rerun["hr_scale"] == 2.0
    assert (rerun["hr_resize_mode"], rerun["hr_upscaler"]) == (1, "Latent Bilinear")
    assert "scheduler" not in rerun
    assert rerun["override_settings"] == {"sd_model_checkpoint": "randomSD15 [37f45461fe]"}
    assert warnings(again.stderr) == []


# --- hires ---------------------------------------------------------------------------------------


def test_hires_gets_what_sdnext_needs(sdnext: FakeWebUI, tmp_path: Path) -> None:
    r = sdcli(sdnext, "generate", *SMALL, "--set", "enable_hr=true", "x", "-o", str(tmp_path))
    assert r.exit_code == 0, r.stderr
    body = sdnext.requests_to(TXT2IMG)[0].json
    # captured: enable_hr with hr_scale alone runs no hires pass at all on SD.Next
    assert (body["hr_resize_mode"], body["hr_upscaler"]) == (1, "Latent Bilinear")
    assert warnings(r.stderr) == []
    from sdcli.pngmeta import image_size

    assert image_size(Path(r.stdout.strip()).read_bytes()) == (128, 128)


def test_a_server_that_ignored_hires_is_caught(sdnext: FakeWebUI, tmp_path: Path) -> None:
    r = sdcli(
        sdnext, "generate", *SMALL, "--set", "enable_hr=true", "--set", "hr_upscaler=None",
        "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == [
        "sdcli: warning: the server made a 64x64 image, not the hires fix size 128x128 asked "
        "for (did the server ignore hires fix?)"
    ]


def test_the_a1111_latent_upscaler_is_refused_before_sending(
    sdnext: FakeWebUI, tmp_path: Path
) -> None:
    r = sdcli(
        sdnext, "generate", *SMALL, "--set", "enable_hr=true", "--set", "hr_upscaler=Latent",
        "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert r.exit_code == 2  # SD.Next would run a second pass that upscales nothing (captured)
    assert "no upscaler 'Latent'" in r.stderr and "SD.Next calls it 'Latent Bilinear'" in r.stderr
    assert sdnext.requests_to(TXT2IMG) == []


# --- a model that failed to load ---------------------------------------------------------------


def test_no_model_loaded_is_said(sdnext: FakeWebUI, tmp_path: Path) -> None:
    sdnext.fail_next_model_load()
    assert sdcli(sdnext, "set-model", "qteamix").exit_code == 1
    info = sdcli(sdnext, "info")
    rows = dict(line.split("\t", 1) for line in info.stdout.splitlines())
    assert rows["model"] == "none loaded"  # its option still names qteamixQ_gamma
    listed = [json.loads(line) for line in sdcli(sdnext, "models", "--json").stdout.splitlines()]
    assert [row["title"] for row in listed if row["current"]] == []
    r = sdcli(sdnext, "generate", *SMALL, "x", "-o", str(tmp_path))
    assert r.exit_code == 1
    assert "the server answered without any image" in r.stderr
    assert "no model may be loaded" in r.stderr
    # not "already loaded": SD.Next does not load a name it already holds (its answer: false)
    again = sdcli(sdnext, "set-model", "qteamix")
    assert again.exit_code == 1 and "no model is loaded" in again.stderr
    other = sdcli(sdnext, "set-model", "randomSD15")
    assert other.exit_code == 0, other.stderr
    assert other.stdout == "randomSD15 [37f45461fe]\n"


# --- errors --------------------------------------------------------------------------------------


def test_a_long_error_is_one_line_and_whole_under_debug(sdnext: FakeWebUI, tmp_path: Path) -> None:
    body = json.loads((CAPTURES / "basics.json").read_text(encoding="utf-8"))[3]["response"]
    sdnext.fail(TXT2IMG, 500, body=body["body"], times=2)
    r = sdcli(sdnext, "generate", *SMALL, "x", "-o", str(tmp_path))
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "sdcli: error: the server failed (500): ResponseValidationError: 23 validation errors"
    ]
    debug = sdcli(sdnext, "--debug", "generate", *SMALL, "x", "-o", str(tmp_path))
    assert debug.exit_code == 1
    assert "'loc': ('response', 136, 'cls')" in debug.stderr  # the rest, for whoever asks
    assert 'modules/api/endpoints.py", line 209' in debug.stderr
