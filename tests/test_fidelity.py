"""The web UI's silent failures (webui-api.md §6, §7, fixtures/errors.md) and what sdcli does.

The server answers 200 when it ignored part of a request: an unknown scheduler becomes
Automatic, a width that is not a multiple of 8 is rounded down. sdcli checks names before it
sends anything and compares what came back with what was asked, so none of it passes unnoticed.
Also here: telling the flavours apart (`sdcli info`), with the few GETs that takes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from sdcli.apitypes import Sampler
from sdcli.catalog import Catalog, is_sdnext
from sdcli.client import WebUIClient
from sdcli.errors import NotFoundError
from sdcli.names.lookup import has_combined_names, resolve_sampler, resolve_upscaler
from sdcli.names.request import resolve_names
from sdcli.pngmeta import png_size
from sdcli.serverinfo import detect_flavour
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import generate, invoke, warnings

MakeFake = Callable[..., FakeWebUI]
TXT2IMG = "/sdapi/v1/txt2img"
UPSCALERS = ["None", "Lanczos", "R-ESRGAN 4x+", "Latent", "Latent (bicubic)"]


# --- image size: read from the PNG, not from `info` ----------------------------------------------


def test_a_size_the_server_rounded_draws_a_warning(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    # --set goes around sdcli's own multiple-of-8 check; the real server then makes a 56-pixel
    # wide image for width 63 and still reports width 63 in `info` (fixtures/errors.md).
    r = generate(fake_webui, tmp_path, "--set", "width=60", "--set", "height=64", "x")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == [
        "sdcli: warning: the server made a 56x64 image, not the 60x64 asked for "
        "(the web UI rounds sizes down to multiples of 8)"
    ]
    saved = Path(r.stdout.strip())
    assert png_size(saved.read_bytes()) == (56, 64)


def test_the_size_asked_for_draws_no_warning(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "--size", "640x448", "x")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == []


def test_hires_fix_images_are_larger_on_purpose(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(
        fake_webui,
        tmp_path,
        "--size",
        "512x512",
        "--set",
        "enable_hr=true",
        "--set",
        "denoising_strength=0.5",
        "--set",
        "hr_scale=2",
        "x",
    )
    assert r.exit_code == 0, r.stderr
    saved = Path(r.stdout.strip())
    assert png_size(saved.read_bytes()) == (1024, 1024)
    assert warnings(r.stderr) == []


# --- scheduler: compared with the infotext's "Schedule type" -------------------------------------


def test_a_scheduler_the_server_ignored_draws_a_warning(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    # --set goes around sdcli's name check; the server silently runs Automatic instead.
    r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "--set", "scheduler=Nope", "x")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == [
        "sdcli: warning: the server used schedule type 'Automatic' instead of 'Nope'"
    ]


@pytest.mark.parametrize(
    "flags",
    [
        ["--sampler", "Euler a", "--set", "scheduler=sgm_uniform"],  # a name, not the label
        ["--sampler", "Euler a", "--scheduler", "karras"],
        ["--sampler", "DPM++ 2M", "--scheduler", "Karras"],  # the sampler's own: "Automatic"
        ["--sampler", "DPM++ 2M Karras"],
        ["--sampler", "Euler a", "--scheduler", "Automatic"],
    ],
    ids=lambda f: " ".join(f),
)
def test_a_scheduler_the_server_used_draws_no_warning(
    flags: list[str], fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(fake_webui, tmp_path, *flags, "x")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == []
    assert fake_webui.requests_to(TXT2IMG)


# --- hires upscaler: checked before anything is generated ----------------------------------------


def test_an_unknown_hires_upscaler_exits_2_before_generating(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(
        fake_webui,
        tmp_path,
        "--set",
        "enable_hr=true",
        "--set",
        "denoising_strength=0.5",
        "--set",
        "hr_upscaler=Latent (bicubik)",
        "x",
    )
    assert r.exit_code == 2
    assert "no upscaler 'Latent (bicubik)'" in r.stderr
    assert "did you mean 'Latent (bicubic)'" in r.stderr
    assert fake_webui.requests_to(TXT2IMG) == []
    assert list(tmp_path.iterdir()) == []


def test_a_presets_hires_upscaler_is_checked_too(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "hires.toml").write_text(
        '[params]\nenable_hr = true\ndenoising_strength = 0.4\nhr_upscaler = "R-ESRGAN 4x"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("SDCLI_PRESETS_PATH", str(presets))
    r = generate(fake_webui, tmp_path / "out", "-p", "hires", "x")
    assert r.exit_code == 2, r.stderr
    assert "no upscaler 'R-ESRGAN 4x'" in r.stderr
    assert "did you mean 'R-ESRGAN 4x+'" in r.stderr
    assert fake_webui.requests_to(TXT2IMG) == []


def test_a_hires_upscaler_is_sent_as_the_server_spells_it(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(
        fake_webui,
        tmp_path,
        "--set",
        "enable_hr=true",
        "--set",
        "denoising_strength=0.5",
        "--set",
        "hr_upscaler=r-esrgan 4x+",
        "-",
        input="a cat\na dog\n",
    )
    assert r.exit_code == 0, r.stderr
    assert [q.json["hr_upscaler"] for q in fake_webui.requests_to(TXT2IMG)] == [
        "R-ESRGAN 4x+",
        "R-ESRGAN 4x+",
    ]
    # The lists are read once per process, not per prompt.
    assert len(fake_webui.requests_to("/sdapi/v1/upscalers")) == 1
    assert len(fake_webui.requests_to("/sdapi/v1/latent-upscale-modes")) == 1


def test_the_name_lists_are_fetched_once_per_catalog(fake_webui: FakeWebUI) -> None:
    values = {"sampler": "Euler a", "params": {"enable_hr": True, "hr_upscaler": "Lanczos"}}
    with WebUIClient(fake_webui.url) as client:
        catalog = Catalog(client)
        first = resolve_names(values, catalog, {"hr_upscaler": "latent"})
        again = resolve_names(values, catalog)
    assert (first.sampler_name, first.hr_upscaler) == ("Euler a", "Latent")  # --set wins
    assert again.hr_upscaler == "Lanczos"
    for path in ("upscalers", "latent-upscale-modes", "samplers", "schedulers"):
        assert len(fake_webui.requests_to(f"/sdapi/v1/{path}")) == 1, path


def test_the_upscaler_is_not_checked_when_hires_is_off(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(fake_webui, tmp_path, "--set", "hr_upscaler=whatever", "x")
    assert r.exit_code == 0, r.stderr
    assert fake_webui.requests_to("/sdapi/v1/upscalers") == []


def test_the_fake_runs_hires_fix_as_the_web_ui_does(fake_webui: FakeWebUI) -> None:
    url = fake_webui.url + TXT2IMG
    body = {"prompt": "x", "steps": 2, "width": 64, "height": 48, "enable_hr": True}
    bad = requests.post(url, json={**body, "hr_upscaler": "Nope"}, timeout=30)
    assert (bad.status_code, bad.json()) == (
        500,
        {
            "error": "Exception",
            "detail": "",
            "body": "",
            "errors": "could not find upscaler named Nope",
        },
    )
    # no denoising_strength: the first pass runs, then a 500 (fixtures/more/, captured)
    none = requests.post(url, json={**body, "hr_upscaler": "Lanczos"}, timeout=30)
    assert none.status_code == 500
    assert none.json()["errors"] == "'>' not supported between instances of 'NoneType' and 'int'"
    good = requests.post(
        url,
        json={**body, "hr_upscaler": "Lanczos", "hr_resize_x": 128, "denoising_strength": 0.4},
        timeout=30,
    ).json()
    info = json.loads(good["info"])
    assert (info["width"], info["height"]) == (64, 48)  # the first pass
    assert png_size(base64.b64decode(good["images"][0])) == (128, 96)
    assert "Size: 64x48" in info["infotexts"][0]
    assert "Hires resize: 128x96, Hires upscaler: Lanczos" in info["infotexts"][0]


def test_resolve_upscaler() -> None:
    assert resolve_upscaler("Latent (bicubic)", UPSCALERS) == "Latent (bicubic)"
    assert resolve_upscaler(" lanczos ", UPSCALERS) == "Lanczos"
    with pytest.raises(NotFoundError, match="did you mean 'R-ESRGAN 4x\\+'"):
        resolve_upscaler("R-ESRGAN 4x", UPSCALERS)
    with pytest.raises(NotFoundError) as err:
        resolve_upscaler("qqqq", UPSCALERS)
    assert err.value.candidates == UPSCALERS
    assert "it has 'None', 'Lanczos'" in str(err.value)


# --- samplers on servers without /schedulers ---------------------------------------------------


def test_combined_names_tell_an_old_server_from_one_without_schedules() -> None:
    old = [Sampler("DPM++ 2M"), Sampler("DPM++ 2M Karras"), Sampler("Euler a")]
    new = [Sampler("DPM++ 2M"), Sampler("Euler a")]
    assert has_combined_names(old) and not has_combined_names(new)
    assert resolve_sampler("DPM++ 2M", "Karras", old, None) == ("DPM++ 2M Karras", None)
    # 1.9.0 (a `scheduler` field, no list) or SD.Next: the sampler is checked, the scheduler
    # handed back for the caller to send or not.
    assert resolve_sampler("dpm++ 2m", "Karras", new, None) == ("DPM++ 2M", "Karras")
    assert resolve_sampler("Euler a", "automatic", new, None) == ("Euler a", None)
    assert resolve_sampler(None, "Karras", new, None) == (None, "Karras")
    # an old combined name is split (SD.Next answers 404 "Sampler not found" to it whole)
    assert resolve_sampler("dpm++ 2m karras", None, new, None) == ("DPM++ 2M", "Karras")
    with pytest.raises(NotFoundError):
        resolve_sampler("DPM++ 9M Karras", None, new, None)


def test_a_scheduler_on_sdnext_is_not_sent_and_says_so(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="sdnext")
    r = generate(fake, tmp_path, "--sampler", "Euler a", "--scheduler", "Karras", "x")
    assert r.exit_code == 0, r.stderr
    (warning,) = warnings(r.stderr)
    assert "SD.Next cannot apply scheduler 'Karras' per request" in warning
    assert 'set it on the server: POST /sdapi/v1/options {"schedulers_sigma": "karras"}' in warning
    body = fake.requests_to(TXT2IMG)[0].json
    assert body["sampler_name"] == "Euler a" and "scheduler" not in body
    assert fake.requests_to("/sdapi/v1/schedulers") == []  # a 500 there: never asked


def test_an_old_combined_sampler_name_is_split_on_sdnext(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="sdnext")
    r = generate(fake, tmp_path, "--sampler", "DPM++ 2M Karras", "x")
    assert r.exit_code == 0, r.stderr
    body = fake.requests_to(TXT2IMG)[0].json
    assert body["sampler_name"] == "DPM++ 2M" and "scheduler" not in body
    assert "SD.Next cannot apply scheduler 'Karras' per request" in r.stderr


@pytest.mark.parametrize("status", [500, 501])
def test_a_list_that_fails_does_not_stop_the_generation(
    fake_webui: FakeWebUI, tmp_path: Path, status: int
) -> None:
    fake_webui.fail("/sdapi/v1/schedulers", status, times=None)
    r = generate(fake_webui, tmp_path, "--sampler", "DPM++ 2M Karras", "x")
    assert r.exit_code == 0, r.stderr
    body = fake_webui.requests_to(TXT2IMG)[0].json
    assert (body["sampler_name"], body["scheduler"]) == ("DPM++ 2M", "Karras")
    (warning,) = warnings(r.stderr)
    assert f"cannot check scheduler 'Karras': the server failed to list them ({status}" in warning
    assert warning.endswith("sent as typed")


def test_clip_skip_on_sdnext_is_its_request_field(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="sdnext")
    r = generate(fake, tmp_path, "--clip-skip", "3", "--json", "x")
    assert r.exit_code == 0, r.stderr
    body = fake.requests_to(TXT2IMG)[0].json
    assert body["clip_skip"] == 3 and "override_settings" not in body  # the override is ignored
    assert json.loads(r.stdout)["parameters"]["CLiP-skip"] == 3  # SD.Next's own key
    assert warnings(r.stderr) == []


def test_clip_skip_on_a1111_is_never_the_field_it_drops(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(fake_webui, tmp_path, "--clip-skip", "3", "x")
    assert r.exit_code == 0, r.stderr
    body = fake_webui.requests_to(TXT2IMG)[0].json
    assert "clip_skip" not in body
    assert body["override_settings"] == {"CLIP_stop_at_last_layers": 3}


# --- flavour detection ---------------------------------------------------------------------------


def test_reforge_is_told_apart_by_its_options(fake_webui: FakeWebUI) -> None:
    fake_webui.options["reforge_karras_rho"] = 7.0  # reForge's own settings; otherwise A1111's API
    r = invoke(["--url", fake_webui.url, "info", "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["flavour"] == "reforge"


def test_forge_without_readable_options_is_known_by_sd_modules(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="forge")
    fake.fail("/sdapi/v1/options", 500, times=None)
    with WebUIClient(fake.url) as client:
        assert detect_flavour(client).name == "forge"
    a1111 = make_fake_webui(profile="a1111-nowebui")
    a1111.fail("/sdapi/v1/options", 500, times=None)
    with WebUIClient(a1111.url) as client:
        found = detect_flavour(client)
    assert (found.name, found.mode, found.version) == ("a1111", "api-only", None)
    assert found.has_schedulers is True


def test_detection_asks_each_question_once_per_client(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="sdnext")
    with WebUIClient(fake.url) as client:
        assert is_sdnext(client)
        first = detect_flavour(client)
        again = detect_flavour(client)
    assert first == again
    assert len(fake.requests_to("/sdapi/v1/version")) == 1
    assert first.mode == "ui"  # SD.Next always serves its UI: nothing else to probe
    assert fake.requests_to("/internal/ping") == []
    with WebUIClient(fake.url) as other:  # a new client (a new process) asks again
        assert is_sdnext(other)
    assert len(fake.requests_to("/sdapi/v1/version")) == 2


@pytest.mark.parametrize(
    ("path", "mode"),
    [("/internal/ping", None), ("/internal/sysinfo", "ui")],
    ids=["ping", "sysinfo"],
)
def test_a_broken_probe_means_unknown_not_failure(
    fake_webui: FakeWebUI, path: str, mode: str | None
) -> None:
    fake_webui.fail(path, 502, mode="html", times=None)
    r = invoke(["--url", fake_webui.url, "info", "--json"])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["flavour"], data["mode"], data["version"]) == ("a1111", mode, None)
    assert r.stderr == ""
