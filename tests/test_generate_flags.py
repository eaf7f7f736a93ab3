"""Hires fix, VAE, styles and refiner as flags of `generate` (and img2img), end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_contract import check_txt2img_body
from typer.testing import CliRunner, Result

from sdcli.cli.app import app
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli

runner = CliRunner()
TXT2IMG = "/sdapi/v1/txt2img"
FAST = ["--steps", "2", "--sampler", "Euler", "--size", "64x64"]
VAES = [
    {"model_name": "vae-ft-mse-840000.safetensors", "filename": "/m/VAE/vae-ft-mse.safetensors"}
]
STYLES = [{"name": "Cinematic Film", "prompt": "{prompt}, film still", "negative_prompt": ""}]


def sdcli(fake: FakeWebUI, *args: str) -> Result:
    return runner.invoke(app, ["--url", fake.url, *args])


def body_of(fake: FakeWebUI) -> dict[str, Any]:
    (request,) = fake.requests_to(TXT2IMG)
    body: dict[str, Any] = request.json
    check_txt2img_body(body)
    return body


def test_hires_flags_make_the_hires_fields(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = sdcli(fake_webui, "generate", *FAST, "--hires", "--hr-scale", "2",
                   "--hr-upscaler", "latent", "--hr-steps", "2", "--denoise", "0.5",
                   "-o", str(tmp_path), "a cat")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = body_of(fake_webui)
    wanted = {
        "enable_hr": True,
        "hr_scale": 2.0,
        "hr_upscaler": "Latent",  # the server's spelling
        "hr_second_pass_steps": 2,
        "denoising_strength": 0.5,
    }
    assert {k: body[k] for k in wanted} == wanted
    with Image.open(result.stdout.strip()) as image:
        assert image.size == (128, 128)


def test_hires_size(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = sdcli(fake_webui, "generate", *FAST, "--hires", "--hr-size", "96x80",
                   "--hr-upscaler", "Lanczos", "-o", str(tmp_path), "a cat")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = body_of(fake_webui)
    assert (body["hr_resize_x"], body["hr_resize_y"]) == (96, 80)
    with Image.open(result.stdout.strip()) as image:
        assert image.size == (96, 80)


def test_vae_styles_and_refiner_go_as_the_server_spells_them(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.serve_list("sd-vae", VAES)
    fake_webui.serve_list("prompt-styles", STYLES)
    result = sdcli(fake_webui, "generate", *FAST, "--vae", "vae-ft-mse-840000.safetensors",
                   "--style", "cinematic film", "--refiner", "counterfeit",
                   "--refiner-switch", "0.8", "-o", str(tmp_path), "a cat")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = body_of(fake_webui)
    assert body["override_settings"]["sd_vae"] == "vae-ft-mse-840000.safetensors"
    assert body["styles"] == ["Cinematic Film"]
    assert body["refiner_checkpoint"] == "anime/counterfeitV30_v30.safetensors [cbfba64e66]"
    assert body["refiner_switch_at"] == 0.8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vae", "vae-ft-ema"], "the server has no VAE 'vae-ft-ema'"),
        (["--style", "noir"], "the server has no prompt style 'noir'"),
        (["--hires", "--hr-upscaler", "Lanczoz"], "no upscaler 'Lanczoz'"),
        (["--hires", "--hr-size", "big"], "--hr-size 'big' must look like WIDTHxHEIGHT"),
        (["--refiner", "nosuchmodel"], "nosuchmodel"),
    ],
)
def test_unknown_vae_style_upscaler_refiner_exit_2_before_sending(
    fake_webui: FakeWebUI, tmp_path: Path, args: list[str], message: str
) -> None:
    fake_webui.serve_list("sd-vae", VAES)
    fake_webui.serve_list("prompt-styles", STYLES)
    result = run_sdcli("--url", fake_webui.url, "generate", *FAST, *args, "-o", str(tmp_path),
                       "a cat")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("sdcli: error: ") and message in result.stderr
    assert fake_webui.requests_to(TXT2IMG) == []
