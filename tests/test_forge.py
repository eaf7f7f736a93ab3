"""What a live Forge (and the web UI's hires fix) did to sdcli, end to end against the fake.

Captures: fixtures/forge/txt2img-hires.json (hires without `hr_additional_modules`: 500; `hr_cfg`
1.0), fixtures/forge/README.md (set-model only selects; a fallback checkpoint), and
fixtures/more/ (A1111 hires without `denoising_strength`: 500 after the first pass).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from sdcli.pngmeta import get_parameters
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli

MakeFake = Callable[..., FakeWebUI]
V1 = "/sdapi/v1"
TXT2IMG = f"{V1}/txt2img"
FIXTURES = Path(__file__).parent / "fixtures"
TINY = ("--steps", "2", "-W", "64", "-H", "64")
HIRES = ("--set", "enable_hr=true", "--set", "hr_upscaler=Latent")


def sent(fake: FakeWebUI) -> dict[str, Any]:
    body: dict[str, Any] = fake.requests_to(TXT2IMG)[-1].json
    return body


# --- the fake answers as the live servers did -------------------------------------------------


def test_the_fake_forge_fails_hires_without_modules_as_captured(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="forge")
    for entry in json.loads((FIXTURES / "forge" / "txt2img-hires.json").read_text()):
        body, want = entry["request"]["body"], entry["response"]
        r = requests.post(fake.url + TXT2IMG, json=body, timeout=30)
        assert r.status_code == want["status"]
        if r.status_code != 200:
            assert r.json() == want["body"]
        else:
            got = json.loads(r.json()["info"])["infotexts"][0]
            wanted = json.loads(want["body"]["info"])["infotexts"][0]
            tail = wanted.split("Denoising strength")[1].split(", Version")[0]
            assert "Denoising strength" + tail in got


@pytest.mark.parametrize("profile", ["a1111", "a1111-nowebui", "a1111-1.8", "forge"])
def test_the_fake_fails_hires_without_denoising_after_the_first_pass(
    make_fake_webui: MakeFake, profile: str
) -> None:
    fake = make_fake_webui(profile=profile)
    body = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "enable_hr": True}
    body["hr_additional_modules"] = ["Use same choices"]  # Forge's other missing default
    r = requests.post(fake.url + TXT2IMG, json=body, timeout=30)
    assert r.status_code == 500
    text = r.json().get("errors") or r.json().get("message")
    assert text == "'>' not supported between instances of 'NoneType' and 'int'"


# --- hires fix defaults ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["a1111", "a1111-nowebui", "a1111-1.8"])
def test_hires_without_denoising_sends_the_web_uis_default(
    make_fake_webui: MakeFake, profile: str, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile=profile)
    r = run_sdcli("--url", fake.url, "--debug", "generate", *TINY, *HIRES, "x", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    body = sent(fake)
    assert body["denoising_strength"] == 0.7
    assert "hr_additional_modules" not in body and "hr_cfg" not in body  # Forge's fields only
    assert "debug: hires fix without denoising_strength: sending the web UI's default 0.7" in (
        r.stderr
    )
    text = get_parameters(Path(r.stdout.strip()).read_bytes())
    assert text is not None and "Denoising strength: 0.7" in text


def test_a_given_denoising_strength_is_kept(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, *HIRES,
        "--set", "denoising_strength=0.4", "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sent(fake_webui)["denoising_strength"] == 0.4


def test_hires_on_forge_sends_its_modules_and_the_cfg_scale(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="forge")
    r = run_sdcli(
        "--url", fake.url, "--debug", "generate", *TINY, *HIRES, "--cfg", "6", "x",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    body = sent(fake)
    assert body["hr_additional_modules"] == ["Use same choices"]
    assert body["hr_cfg"] == 6
    assert body["denoising_strength"] == 0.7
    assert 'sending hr_additional_modules ["Use same choices"]' in r.stderr
    assert "sending hr_cfg 6 like cfg_scale" in r.stderr
    text = get_parameters(Path(r.stdout.strip()).read_bytes())
    assert text is not None
    assert "Hires Module 1: Use same choices, Hires CFG Scale: 6.0" in text
    # ...and --from-image carries both back
    again = run_sdcli("--url", fake.url, "generate", "--dry-run", "--from-image", r.stdout.strip())
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["hr_additional_modules"] == ["Use same choices"]
    assert rerun["hr_cfg"] == 6.0 and rerun["enable_hr"] is True


def test_forge_hires_fields_given_by_the_user_win(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="forge")
    r = run_sdcli(
        "--url", fake.url, "generate", "-q", *TINY, *HIRES, "--set", "hr_cfg=1",
        "--set", "hr_additional_modules=[]", "--set", "denoising_strength=0.3", "x",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    body = sent(fake)
    assert (body["hr_cfg"], body["hr_additional_modules"], body["denoising_strength"]) == (
        1,
        [],
        0.3,
    )


@pytest.mark.parametrize(("profile", "reads"), [("a1111", []), ("forge", [f"{V1}/options"])])
def test_no_hires_no_hires_fields_and_few_requests(
    make_fake_webui: MakeFake, profile: str, reads: list[str], tmp_path: Path
) -> None:
    fake = make_fake_webui(profile=profile)
    r = run_sdcli(
        "--url", fake.url, "generate", "-q", "--count", "2", *TINY, "x", "-o", str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    assert "denoising_strength" not in sent(fake) and "hr_cfg" not in sent(fake)
    # Forge: its answer shows it is Forge; the selection is read once per process, to tell
    # whether it fell back to another checkpoint
    assert [
        q.path for q in fake.requests if q.method == "GET" and "progress" not in q.path
    ] == reads


# --- Forge selects a checkpoint; it loads at the next generation ------------------------------


def test_set_model_on_forge_says_selected(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="forge")
    r = run_sdcli("--url", fake.url, "set-model", "counterfeit")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "anime/counterfeitV30_v30.safetensors [cbfba64e66]\n"
    assert (
        "anime/counterfeitV30_v30.safetensors [cbfba64e66]: selected, loads at the next "
        "generation (Forge)" in r.stderr
    )
    models = run_sdcli("--url", fake.url, "models")
    assert "selected, loads at the next generation" in models.stderr
    info = run_sdcli("--url", fake.url, "info")
    [row] = [line for line in info.stdout.splitlines() if line.startswith("model\t")]
    assert row.endswith("(selected, loads at the next generation)")


def test_set_model_on_a1111_says_nothing_of_the_kind(fake_webui: FakeWebUI) -> None:
    r = run_sdcli("--url", fake_webui.url, "set-model", "counterfeit")
    assert r.returncode == 0, r.stderr
    assert "selected" not in r.stderr
    info = run_sdcli("--url", fake_webui.url, "info")
    assert "selected" not in info.stdout


def test_forge_falling_back_to_another_checkpoint_is_a_warning(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="forge")
    # The configured title's hash matches no checkpoint (an empty hash cache, as captured):
    # Forge loads another one while GET /options goes on naming the selected title.
    fake.options["sd_model_checkpoint"] = "qteamixQ_gamma.safetensors [1b9a98fd9d]"
    r = run_sdcli("--url", fake.url, "generate", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (
        "sdcli: warning: Forge made this image with 'random-sd15', not the selected "
        "'qteamixQ_gamma.safetensors [1b9a98fd9d]'" in r.stderr
    )


def test_forge_on_its_selected_checkpoint_gives_no_warning(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="forge")
    assert run_sdcli("--url", fake.url, "set-model", "counterfeit").returncode == 0
    r = run_sdcli("--url", fake.url, "generate", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr


def test_forge_failing_to_load_the_selected_checkpoint_says_so(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="forge")
    assert run_sdcli("--url", fake.url, "set-model", "counterfeit").returncode == 0
    fake.fail_next_model_load()
    r = run_sdcli("--url", fake.url, "generate", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.startswith("sdcli: error: the server failed (500): SafetensorError")
    assert (
        "Forge loads the checkpoint 'anime/counterfeitV30_v30.safetensors [cbfba64e66]' only "
        "when a job starts: if it cannot load it, the job fails" in r.stderr
    )


def _screen(*args: str, columns: int = 100) -> tuple[int, list[str]]:
    """Run sdcli on a pseudo-terminal and return its exit code and the final screen's lines."""
    import pexpect
    import pyte

    screen = pyte.Screen(columns, 30)
    stream = pyte.Stream(screen)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "sdcli", *args],
        dimensions=(30, columns),
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        encoding="utf-8",
    )
    child.expect(pexpect.EOF, timeout=120)  # a safety net, not a timing assertion
    stream.feed(child.before or "")
    child.close()
    return int(child.exitstatus or 0), [line.rstrip() for line in screen.display if line.strip()]


def test_forge_selection_as_seen_at_a_terminal(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="forge")
    title = "anime/counterfeitV30_v30.safetensors [cbfba64e66]"
    code, lines = _screen("--url", fake.url, "set-model", "counterfeit")
    assert code == 0
    assert lines == [
        f"counterfeit -> {title}",
        f"{title}: selected, loads at the next generation (Forge)",
        title,
    ]
    code, lines = _screen("--url", fake.url, "models")
    assert code == 0
    assert lines[0] == f"* {title}: selected, loads at the next generation (Forge)"
    [marked] = [line for line in lines if line.lstrip().startswith("*") and "│" in line]
    assert title in marked
