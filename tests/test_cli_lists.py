"""`sdcli loras|embeddings|styles|vaes|upscalers`, `refresh` and `models --refresh`, end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from sdcli.cli.app import app
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli
from terminal_helpers import run_on_terminal

runner = CliRunner()
MakeFake = Callable[..., FakeWebUI]
V1 = "/sdapi/v1"

# Shapes from the web UI's source (api/models.py; the Lora extension's create_lora_json): the
# captured server had none of these files, so its lists were empty (fixtures/extra/).
LORAS = [
    {
        "name": "add_detail",
        "alias": "add_detail",
        "path": "/m/Lora/add_detail.safetensors",
        "metadata": {},
    },
    {
        "name": "film grain v2",
        "alias": "filmgrain",
        "path": "/m/Lora/film grain v2.safetensors",
        "metadata": {"ss_network_dim": "32"},
    },
]
EMBEDDINGS = {
    "loaded": {
        "easynegative": {
            "step": None,
            "sd_checkpoint": None,
            "sd_checkpoint_name": None,
            "shape": 768,
            "vectors": 8,
        }
    },
    "skipped": {
        "sdxl_neg": {
            "step": 1000,
            "sd_checkpoint": "abc",
            "sd_checkpoint_name": "x",
            "shape": 1280,
            "vectors": 4,
        }
    },
}
STYLES = [{"name": "cinematic", "prompt": "{prompt}, film still", "negative_prompt": "cartoon"}]
VAES = [{"model_name": "vae-ft-mse-840000", "filename": "/m/VAE/vae-ft-mse-840000.safetensors"}]


def sdcli(fake: FakeWebUI, *args: str) -> Result:
    return runner.invoke(app, ["--url", fake.url, *args])


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_loras_piped_are_tab_separated_lines(fake_webui: FakeWebUI) -> None:
    fake_webui.serve_list("loras", LORAS)
    result = sdcli(fake_webui, "loras")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "add_detail\t\t/m/Lora/add_detail.safetensors",
        "film grain v2\tfilmgrain\t/m/Lora/film grain v2.safetensors",
    ]
    assert json_lines(sdcli(fake_webui, "loras", "--json"))[1] == {
        "name": "film grain v2",
        "alias": "filmgrain",
        "path": "/m/Lora/film grain v2.safetensors",
    }


def test_an_empty_list_says_so_on_stderr_only(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "loras")  # the captured server: []
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no LoRAs" in result.stderr


def test_embeddings_say_which_were_skipped(fake_webui: FakeWebUI) -> None:
    fake_webui.serve_list("embeddings", EMBEDDINGS)
    result = sdcli(fake_webui, "embeddings")
    assert result.stdout.splitlines() == ["easynegative\tloaded\t8", "sdxl_neg\tskipped\t4"]
    rows = json_lines(sdcli(fake_webui, "embeddings", "--json"))
    assert rows[1] == {
        "name": "sdxl_neg",
        "loaded": False,
        "vectors": 4,
        "shape": 1280,
        "step": 1000,
        "checkpoint": "x",
    }


def test_styles_and_vaes(fake_webui: FakeWebUI) -> None:
    fake_webui.serve_list("prompt-styles", STYLES)
    fake_webui.serve_list("sd-vae", VAES)
    assert sdcli(fake_webui, "styles").stdout == "cinematic\t{prompt}, film still\tcartoon\n"
    assert json_lines(sdcli(fake_webui, "vaes", "--json")) == [
        {"name": "vae-ft-mse-840000", "filename": "/m/VAE/vae-ft-mse-840000.safetensors"}
    ]


def test_forge_has_no_vae_list_and_says_so(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="forge")
    result = sdcli(fake, "vaes")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "no /sdapi/v1/sd-vae" in result.stderr


def test_upscalers_list_extras_then_latent_modes(fake_webui: FakeWebUI) -> None:
    rows = json_lines(sdcli(fake_webui, "upscalers", "--json"))
    names = [(r["name"], r["kind"]) for r in rows]
    assert names[:3] == [("None", "extras"), ("Lanczos", "extras"), ("Nearest", "extras")]
    assert ("R-ESRGAN 4x+", "extras") in names
    assert names[-6:] == [
        ("Latent", "latent"),
        ("Latent (antialiased)", "latent"),
        ("Latent (bicubic)", "latent"),
        ("Latent (bicubic antialiased)", "latent"),
        ("Latent (nearest)", "latent"),
        ("Latent (nearest-exact)", "latent"),
    ]
    assert rows[3] == {
        "name": "DAT x2",
        "scale": 2.0,
        "kind": "extras",
        "model_path": "https://github.com/n0kovo/dat_upscaler_models/raw/main/DAT/DAT_x2.pth",
    }


def test_refresh_rescans_every_folder_or_the_ones_named(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "refresh")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    posted = [r.path for r in fake_webui.requests if r.method == "POST"]
    assert posted == [
        f"{V1}/refresh-checkpoints",
        f"{V1}/refresh-loras",
        f"{V1}/refresh-embeddings",
        f"{V1}/refresh-vae",
    ]
    fake_webui.clear_requests()
    assert sdcli(fake_webui, "refresh", "loras").exit_code == 0
    assert [r.path for r in fake_webui.requests] == [f"{V1}/refresh-loras"]


def test_refresh_of_an_unknown_kind_sends_nothing(fake_webui: FakeWebUI) -> None:
    result = run_sdcli("--url", fake_webui.url, "refresh", "lora", "modles")
    assert result.returncode == 2
    assert result.stderr == (
        "sdcli: error: cannot refresh 'modles': choose from checkpoints, loras, embeddings, vae\n"
    )
    assert fake_webui.requests_to(f"{V1}/refresh-loras") == []
    assert sdcli(fake_webui, "refresh", "lora").exit_code == 0  # one LoRA or many: the same
    assert len(fake_webui.requests_to(f"{V1}/refresh-loras")) == 1


def test_models_refresh_rescans_before_listing(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "models", "--refresh")
    assert result.exit_code == 0, result.stderr
    paths = [r.path for r in fake_webui.requests]
    assert paths.index(f"{V1}/refresh-checkpoints") < paths.index(f"{V1}/sd-models")


@pytest.mark.parametrize("command", ["loras", "styles"])
def test_a_list_on_a_terminal_is_a_table(fake_webui: FakeWebUI, command: str) -> None:
    fake_webui.serve_list("loras", LORAS)
    fake_webui.serve_list("prompt-styles", STYLES)
    screen = run_on_terminal("--url", fake_webui.url, command, columns=100)
    assert screen.exit_code == 0
    text = screen.text
    first = "film grain v2" if command == "loras" else "cinematic"
    row = next(line for line in screen.lines if first in line)
    assert "\t" not in row  # a table's columns, not tab-separated fields
    assert ("alias" in text) if command == "loras" else ("negative prompt" in text)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("<lora:add_detial:0.8> a cat", "no LoRA 'add_detial' (in <lora:add_detial:…>) "
         "(did you mean 'add_detail'?)"),
        ("a cat <lora:Add-Detail>", "no LoRA 'Add-Detail'; it is spelled 'add_detail'"),
    ],
)  # fmt: skip
def test_an_unknown_lora_in_a_prompt_stops_before_sending(
    fake_webui: FakeWebUI, tmp_path: Any, prompt: str, message: str
) -> None:
    fake_webui.serve_list("loras", LORAS)
    result = run_sdcli("--url", fake_webui.url, "generate", "--steps", "2", "-o", str(tmp_path),
                       prompt)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("sdcli: error: the server has ")
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert fake_webui.requests_to(f"{V1}/txt2img") == []


def test_a_known_lora_goes_as_typed(fake_webui: FakeWebUI, tmp_path: Any) -> None:
    fake_webui.serve_list("loras", LORAS)
    prompt = "a cat <lora:film grain v2:0.5>"
    result = sdcli(fake_webui, "generate", "--steps", "2", "-o", str(tmp_path), prompt)
    assert result.exit_code == 0, result.stderr
    (request,) = fake_webui.requests_to(f"{V1}/txt2img")
    assert request.json["prompt"] == prompt
