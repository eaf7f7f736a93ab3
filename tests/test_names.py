"""Names as people type them (issue 10, item 7): case and separators never matter, and a
name picked by part of it needs three letters or digits. End to end against the fake web UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sdcli.apitypes import Sampler, Scheduler
from sdcli.errors import NotFoundError
from sdcli.names.lookup import did_you_mean, fold, resolve_sampler, resolve_upscaler
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli, sdcli

SDXL = "sd_xl_base_1.0.safetensors [31e35c80fc]"
OPTIONS = "/sdapi/v1/options"
TXT2IMG = "/sdapi/v1/txt2img"


def posts_to_options(fake: FakeWebUI) -> list[Any]:
    return [r.json for r in fake.requests_to(OPTIONS) if r.method == "POST"]


# --- one normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sdxl", "SD_XL"),
        ("sd-xl base 1.0", "sd_xl_base_1.0"),
        ("Latent (bicubic)", "latent_bicubic"),
        ("ＳＤＸＬ", "sdxl"),  # full-width letters, as an IME types them
    ],
)
def test_case_and_separators_fold_away(a: str, b: str) -> None:
    assert fold(a) == fold(b)


def test_a_plus_is_part_of_a_name_not_a_separator() -> None:
    assert fold("DPM++ 2M") != fold("DPM 2M")
    assert fold("R-ESRGAN 4x+") != fold("R-ESRGAN 4x")


def test_did_you_mean_ignores_separators() -> None:
    assert did_you_mean("sdxl", ["v1-5-pruned-emaonly", "sd_xl_base_1.0"]) == ["sd_xl_base_1.0"]
    assert did_you_mean("Euler b", ["Euler", "Euler a", "DDIM"])[0] == "Euler a"


# --- set-model ---------------------------------------------------------------------------------


def test_set_model_with_one_letter_switches_nothing(fake_webui: FakeWebUI) -> None:
    # "a" starts exactly one title (anime/counterfeit…): it must not pick it for a shared server.
    before = fake_webui.current_model
    result = sdcli(fake_webui, "set-model", "a")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "'a' is too short to pick a checkpoint by part of its name" in result.stderr
    assert "anime/counterfeitV30_v30.safetensors [cbfba64e66]" in result.stderr
    assert posts_to_options(fake_webui) == []
    assert fake_webui.current_model == before


def test_two_letters_are_too_few_and_three_are_enough(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "set-model", "qt")
    assert result.exit_code == 2
    assert "too short" in result.stderr
    assert posts_to_options(fake_webui) == []
    result = sdcli(fake_webui, "set-model", "qte")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("qteamixQ_gamma.safetensors [")


@pytest.mark.parametrize("typed", ["sdxl", "SD-XL", "sd xl base 1.0", "SDXL_BASE"])
def test_set_model_ignores_separators(fake_webui: FakeWebUI, typed: str) -> None:
    result = sdcli(fake_webui, "set-model", typed)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SDXL + "\n"
    assert posts_to_options(fake_webui) == [{"sd_model_checkpoint": SDXL}]


def test_a_too_short_name_is_one_plain_line_from_a_real_process(fake_webui: FakeWebUI) -> None:
    done = run_sdcli("--url", fake_webui.url, "set-model", "a")
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()[:1]
    assert line.startswith("sdcli: error: 'a' is too short")


# --- generate: models, samplers, schedulers, upscalers ------------------------------------------


def test_generate_resolves_names_typed_with_other_separators(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    result = sdcli(
        fake_webui,
        "generate",
        "--model",
        "SD-XL-Base",
        "--sampler",
        "dpm++_2m",
        "--scheduler",
        "align-your-steps",
        "--set",
        "enable_hr=true",
        "--set",
        "denoising_strength=0.5",
        "--set",
        "hr_upscaler=latent_bicubic",
        "-o",
        str(tmp_path),
        "a cat",
    )
    assert result.exit_code == 0, result.stderr
    [body] = [r.json for r in fake_webui.requests_to(TXT2IMG)]
    assert body["sampler_name"] == "DPM++ 2M"
    assert body["scheduler"] == "Align Your Steps"
    assert body["override_settings"]["sd_model_checkpoint"] == SDXL
    assert body["hr_upscaler"] == "Latent (bicubic)"


def test_generate_with_a_two_letter_model_sends_nothing(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    result = sdcli(fake_webui, "generate", "--model", "sd", "-o", str(tmp_path), "a cat")
    assert result.exit_code == 2
    assert "too short" in result.stderr
    assert fake_webui.requests_to(TXT2IMG) == []


def test_a_combined_name_with_other_separators_is_split() -> None:
    samplers = [Sampler("DPM++ 2M"), Sampler("DPM++ 2M SDE"), Sampler("Euler a")]
    schedulers = [Scheduler("karras", "Karras"), Scheduler("sgm_uniform", "SGM Uniform")]
    assert resolve_sampler("dpm++_2m_karras", None, samplers, schedulers) == ("DPM++ 2M", "Karras")
    assert resolve_sampler("DPM++ 2M SDE sgm-uniform", None, samplers, schedulers) == (
        "DPM++ 2M SDE",
        "SGM Uniform",
    )


def test_names_equal_once_folded_are_ambiguous_not_guessed() -> None:
    with pytest.raises(NotFoundError, match="matches several upscalers"):
        resolve_upscaler("esrgan_4x", ["ESRGAN 4x", "ESRGAN-4x", "Lanczos"])
    # …unless one of them is spelt exactly as typed.
    assert resolve_upscaler("ESRGAN-4x", ["ESRGAN 4x", "ESRGAN-4x"]) == "ESRGAN-4x"


def test_an_unknown_sampler_suggests_across_separators(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    result = sdcli(fake_webui, "generate", "--sampler", "dpm_2m", "-o", str(tmp_path), "a cat")
    assert result.exit_code == 2
    assert "no sampler 'dpm_2m'" in result.stderr
    assert "did you mean 'DPM++ 2M'" in result.stderr
    assert fake_webui.requests_to(TXT2IMG) == []
