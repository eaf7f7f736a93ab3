"""The fake web UI itself, over real loopback HTTP, checked against captures of a live v1.10.1.

The captures (tests/fixtures, see its README.md) are the reference: where the fake answers what
the real server answered, the comparison is exact, types included (1 is not 1.0).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from sdcli.testing.fake_webui import FakeWebUI

FIXTURES = Path(__file__).parent / "fixtures"
V1 = "/sdapi/v1"
MakeFake = Callable[..., FakeWebUI]
SMALL = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler a"}
RANDOM_TITLE = "random-sd15.safetensors [6d338e2388]"
COUNTERFEIT = "anime/counterfeitV30_v30.safetensors [cbfba64e66]"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def typed(value: Any) -> Any:
    """A structure where 1, 1.0 and True differ, for comparing JSON exactly."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def png_head(truncated_b64: str) -> bytes:
    """The bytes a capture's truncated base64 image still holds (IHDR, start of tEXt)."""
    text = truncated_b64.split("...", 1)[0]
    return base64.b64decode(text[: len(text) // 4 * 4])


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk; asserts the signature and every CRC."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        out.append((kind, data))
        pos += 12 + length
    return out


def captured_errors() -> dict[str, dict[str, Any]]:
    """The sections of errors.md: request line, body, status and JSON answer."""
    found: dict[str, dict[str, Any]] = {}
    text = (FIXTURES / "errors.md").read_text(encoding="utf-8")
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, rest = section.partition("\n")
        line = re.search(r"^`(GET|POST) (\S+)`", rest, re.M)
        status = re.search(r"Status: \*\*(\d+)\*\*", rest)
        answer = re.search(r"```json\n(.*?)\n```", rest, re.S)
        if not (line and status and answer):
            continue
        body = re.search(r"Request body: `(.*)`", rest)
        found[title.strip()] = {
            "method": line.group(1),
            "path": line.group(2),
            "body": body.group(1) if body else "",
            "status": int(status.group(1)),
            "answer": json.loads(answer.group(1)),
        }
    return found


ERRORS = captured_errors()
MORE = load("extra/more-captures.json")


def comparable(info: dict[str, Any], *, random_seed: bool) -> dict[str, Any]:
    """An `info` without what is random on every run (subseeds, timestamp, maybe the seed)."""
    out = {k: v for k, v in info.items() if k not in ("subseed", "all_subseeds", "job_timestamp")}
    if random_seed:
        del out["seed"], out["all_seeds"]
        out["infotexts"] = [re.sub(r"Seed: \d+", "Seed: N", t) for t in out["infotexts"]]
    return out


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Background requests for jobs that must be in flight.

    Not joined here: if a test fails with a job still paused, stopping the fake (a later
    teardown) is what ends the request.
    """
    executor = ThreadPoolExecutor(max_workers=4)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def post(fake: FakeWebUI, path: str, body: Any = None, **kw: Any) -> requests.Response:
    kw.setdefault("timeout", 30)
    return requests.post(fake.url + path, json=body, **kw)


def get(fake: FakeWebUI, path: str, **kw: Any) -> requests.Response:
    kw.setdefault("timeout", 30)
    return requests.get(fake.url + path, **kw)


def generate(fake: FakeWebUI, body: dict[str, Any], kind: str = "txt2img") -> dict[str, Any]:
    r = post(fake, f"{V1}/{kind}", body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    data["info"] = json.loads(data["info"])
    return data


def in_background(
    pool: ThreadPoolExecutor, fake: FakeWebUI, body: dict[str, Any], path: str = f"{V1}/txt2img"
) -> Future[requests.Response]:
    return pool.submit(post, fake, path, body)


def our_png(fake: FakeWebUI, **body: Any) -> str:
    return str(generate(fake, {**SMALL, **body})["images"][0])


# --- captured GET endpoints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fixture"),
    [
        ("samplers", "samplers.json"),
        ("schedulers", "schedulers.json"),
        ("upscalers", "extra/upscalers.json"),
        ("latent-upscale-modes", "extra/latent-upscale-modes.json"),
        ("sd-vae", "extra/sd-vae.json"),
        ("hypernetworks", "extra/hypernetworks.json"),
        ("face-restorers", "extra/face-restorers.json"),
        ("realesrgan-models", "extra/realesrgan-models.json"),
        ("prompt-styles", "extra/prompt-styles.json"),
        ("embeddings", "extra/embeddings.json"),
        ("scripts", "extra/scripts.json"),
        ("script-info", "extra/script-info.json"),
        ("extensions", "extra/extensions.json"),
        ("loras", "extra/loras.json"),
        ("memory", "extra/memory.json"),
        ("progress", "progress.json"),
    ],
)
def test_get_endpoints_answer_what_the_live_server_did(
    fake_webui: FakeWebUI, http_session: requests.Session, path: str, fixture: str
) -> None:
    r = http_session.get(f"{fake_webui.url}{V1}/{path}", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert typed(r.json()) == typed(load(fixture))


def test_options_answer_what_the_live_server_did_with_its_config_file(
    make_fake_webui: Callable[..., FakeWebUI], http_session: requests.Session
) -> None:
    # That server's config.json held clip skip (GET shows 1.0); a fresh one shows the int 1.
    fake = make_fake_webui(config_options={"CLIP_stop_at_last_layers": 1})
    r = http_session.get(f"{fake.url}{V1}/options", timeout=10)
    assert r.status_code == 200
    assert typed(r.json()) == typed(load("options-loaded.json"))


def test_sd_models_lists_the_captured_model_first_then_others(fake_webui: FakeWebUI) -> None:
    models = get(fake_webui, f"{V1}/sd-models").json()
    assert models[0] == load("sd-models-loaded.json")[0]
    by_title = {m["title"]: m for m in models}
    counterfeit = by_title[COUNTERFEIT]
    assert counterfeit["model_name"] == "anime_counterfeitV30_v30"
    assert counterfeit["hash"] == "cbfba64e66" and counterfeit["sha256"].startswith("cbfba64e66")
    assert counterfeit["filename"].endswith(
        "/Stable-diffusion/anime/counterfeitV30_v30.safetensors"
    )
    assert {
        "qteamixQ_gamma.safetensors [58174ec2a4]",
        "sd_xl_base_1.0.safetensors [31e35c80fc]",
        "v1-5-pruned-emaonly.safetensors [6ce0161689]",
    } <= set(by_title)
    [unhashed] = [m for m in models if m["hash"] is None]
    assert unhashed["sha256"] is None and "[" not in unhashed["title"]
    assert all(set(m) == set(models[0]) for m in models)


def test_cmd_flags_follow_the_capture_with_this_servers_mode_and_port(
    fake_webui: FakeWebUI,
) -> None:
    flags = get(fake_webui, f"{V1}/cmd-flags").json()
    captured = load("cmd-flags.json")
    assert set(flags) == set(captured)
    assert flags["nowebui"] is False and flags["port"] == str(fake_webui.port)
    assert flags["api_auth"] is None and flags["data_dir"] == captured["data_dir"]


# --- txt2img against the captures ------------------------------------------------------------


def test_txt2img_matches_the_captured_response_byte_for_byte_where_it_can(
    fake_webui: FakeWebUI,
) -> None:
    captured = load("txt2img-response.json")
    info = load("txt2img-info-parsed.json")
    body = {**SMALL, "cfg_scale": 7, "override_settings": {"CLIP_stop_at_last_layers": 2}}
    ours = generate(fake_webui, {**body, "seed": info["seed"]})
    expected_params = {**captured["parameters"], "seed": info["seed"]}
    assert typed(ours["parameters"]) == typed(expected_params)
    assert list(ours) == ["images", "parameters", "info"]
    assert typed(comparable(ours["info"], random_seed=False)) == typed(
        comparable(info, random_seed=False)
    )
    png = base64.b64decode(ours["images"][0])
    head = png_head(captured["images"][0])
    assert png[: len(head)] == head  # same IHDR, and the tEXt chunk starts identically
    assert len(ours["images"][0]) == pytest.approx(12908, rel=0.5)


@pytest.mark.parametrize(
    "title",
    [
        "txt2img bad sampler name",
        "txt2img width=63",
        "txt2img bad scheduler",
        "txt2img override_settings bad checkpoint",
    ],
)
def test_txt2img_quirks_match_the_captures(fake_webui: FakeWebUI, title: str) -> None:
    case = ERRORS[title]
    r = post(fake_webui, case["path"], json.loads(case["body"]))
    assert r.status_code == case["status"] == 200
    ours, theirs = r.json(), case["answer"]
    assert typed(ours["parameters"]) == typed(theirs["parameters"])
    assert comparable(json.loads(ours["info"]), random_seed=True) == comparable(
        json.loads(theirs["info"]), random_seed=True
    )
    assert chunks(base64.b64decode(ours["images"][0]))[0] == chunks_head(theirs["images"][0])


def chunks_head(truncated_b64: str) -> tuple[bytes, bytes]:
    head = png_head(truncated_b64)
    return head[12:16], head[16:29]  # IHDR type and data: the real image size


@pytest.mark.parametrize(
    "title",
    [
        "txt2img batch_size=2",
        "txt2img n_iter=2",
        "txt2img send_images=false",
        "txt2img negative_prompt + scheduler karras + DPM++ 2M",
        "txt2img sampler alias k_euler_a",
        "txt2img sampler_index only (deprecated)",
        "txt2img empty body {}",
    ],
)
def test_more_txt2img_captures(fake_webui: FakeWebUI, title: str) -> None:
    case = MORE[title]
    r = post(fake_webui, f"{V1}/txt2img", case["body"])
    assert r.status_code == case["status"]
    ours, theirs = r.json(), case["response"]
    random_seed = "seed" not in case["body"]
    assert typed(ours["parameters"]) == typed(theirs["parameters"])
    assert typed(comparable(json.loads(ours["info"]), random_seed=random_seed)) == typed(
        comparable(case["info_parsed"], random_seed=random_seed)
    )
    assert len(ours["images"]) == len(theirs["images"])
    for mine, captured in zip(ours["images"], theirs["images"], strict=True):
        head = png_head(captured)
        if not random_seed:
            assert base64.b64decode(mine)[: len(head)] == head


@pytest.mark.parametrize(
    "title", ["img2img random weights (NaN check)", "img2img with data: prefix"]
)
def test_img2img_captures(fake_webui: FakeWebUI, title: str) -> None:
    case = MORE[title]
    init = our_png(fake_webui)
    if case["body"]["init_images"][0].startswith("data:"):
        init = "data:image/png;base64," + init
    r = post(fake_webui, f"{V1}/img2img", {**case["body"], "init_images": [init]})
    assert r.status_code == 200, r.text
    ours = r.json()
    assert typed(ours["parameters"]) == typed(case["response"]["parameters"])
    assert comparable(json.loads(ours["info"]), random_seed=False) == comparable(
        case["info_parsed"], random_seed=False
    )


def test_two_images_per_batch_and_batches_get_consecutive_seeds(fake_webui: FakeWebUI) -> None:
    data = generate(fake_webui, {**SMALL, "seed": 100, "batch_size": 2, "n_iter": 3})
    assert data["info"]["all_seeds"] == [100, 101, 102, 103, 104, 105]
    subseeds = data["info"]["all_subseeds"]
    assert subseeds == list(range(subseeds[0], subseeds[0] + 6))
    assert len(data["images"]) == len(data["info"]["infotexts"]) == 6
    assert len(set(data["images"])) == 6
    random_seed = generate(fake_webui, SMALL)["info"]["seed"]
    assert 0 <= random_seed < 2**32


def test_same_seed_same_png_other_seed_other_png(fake_webui: FakeWebUI) -> None:
    first, again, other = (our_png(fake_webui, seed=s) for s in (5, 5, 6))
    assert first == again
    assert first != other


def test_variation_seed_strength_keeps_the_seed_and_is_recorded(fake_webui: FakeWebUI) -> None:
    data = generate(
        fake_webui, {**SMALL, "seed": 9, "subseed": 40, "subseed_strength": 0.5, "batch_size": 2}
    )
    assert data["info"]["all_seeds"] == [9, 9]
    assert data["info"]["all_subseeds"] == [40, 41]
    assert "Seed: 9, Size: 64x64" in data["info"]["infotexts"][1]
    assert "Variation seed: 41, Variation seed strength: 0.5" in data["info"]["infotexts"][1]


@pytest.mark.parametrize(
    ("body", "sampler", "schedule", "extra"),
    [
        ({"sampler_name": "DPM++ 2M Karras"}, "DPM++ 2M", "Karras", {"Schedule type": "Karras"}),
        (
            {"sampler_name": "Euler a", "scheduler": "Karras"},
            "Euler a",
            "Karras",
            {"Schedule type": "Karras"},
        ),
        (
            {"sampler_name": "Euler", "scheduler": "exponential"},
            "Euler",
            "Exponential",
            {"Schedule type": "Exponential"},
        ),
        (
            {"sampler_name": "DPM++ 2M SDE"},
            "DPM++ 2M SDE",
            "Exponential",
            {"Schedule type": "Exponential"},
        ),
        (
            {"sampler_name": "Euler a SGMUniform"},
            "Euler a",
            "SGM Uniform",
            {"Schedule type": "SGM Uniform"},
        ),
        ({"sampler_name": "DDIM", "scheduler": "Karras"}, "DDIM", "Karras", {}),
        ({"sampler_name": "euler a"}, "DPM++ 2M", "Karras", {"Schedule type": "Karras"}),
    ],
)
def test_sampler_and_scheduler_resolution(
    fake_webui: FakeWebUI, body: dict[str, Any], sampler: str, schedule: str, extra: dict[str, str]
) -> None:
    info = generate(fake_webui, {**SMALL, **body})["info"]
    assert info["sampler_name"] == sampler
    assert f"Sampler: {sampler}, Schedule type: {schedule}, CFG scale" in info["infotexts"][0]
    assert info["extra_generation_params"] == extra
    assert "scheduler" not in info


def test_infotext_format_quoting_negative_prompt_and_key_order(fake_webui: FakeWebUI) -> None:
    body = {
        **SMALL,
        "prompt": "a cat,\nin a hat",
        "negative_prompt": "blurry, dark",
        "seed": 3,
        "cfg_scale": 6.5,
        "restore_faces": True,
        "tiling": True,
        "seed_resize_from_w": 32,
        "seed_resize_from_h": 48,
        "override_settings": {"CLIP_stop_at_last_layers": 3},
    }
    info = generate(fake_webui, body)["info"]
    assert info["infotexts"][0] == (
        "a cat,\nin a hat\nNegative prompt: blurry, dark\n"
        "Steps: 2, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 3, "
        "Face restoration: CodeFormer, Size: 64x64, Model hash: 6d338e2388, Model: random-sd15, "
        "Seed resize from: 32x48, Clip skip: 3, Tiling: True, Version: v1.10.1"
    )
    assert info["restore_faces"] is True and info["face_restoration_model"] == "CodeFormer"
    assert info["clip_skip"] == 3


def test_send_images_false_and_unknown_fields_ignored(fake_webui: FakeWebUI) -> None:
    data = generate(fake_webui, {**SMALL, "send_images": False, "clip_skip": 4, "nonsense": 1})
    assert data["images"] == []
    assert "nonsense" not in data["parameters"] and "clip_skip" not in data["parameters"]
    assert data["info"]["clip_skip"] == 1
    assert "Clip skip" not in data["info"]["infotexts"][0]


def test_infotext_field_fills_what_the_request_left_out(fake_webui: FakeWebUI) -> None:
    text = load("png-info.json")["plain_base64"]["body"]["info"]
    data = generate(fake_webui, {"infotext": text, "steps": 3})
    assert data["parameters"]["prompt"] == "a cat"
    assert data["parameters"]["steps"] == 3 and data["parameters"]["width"] == 64
    assert data["info"]["seed"] == 634212383 and data["info"]["clip_skip"] == 2


# --- request validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "msg", "kind"),
    [
        ("steps", "abc", "value is not a valid integer", "type_error.integer"),
        ("steps", [20], "value is not a valid integer", "type_error.integer"),
        ("width", {"x": 1}, "value is not a valid integer", "type_error.integer"),
        ("cfg_scale", "high", "value is not a valid float", "type_error.float"),
        ("restore_faces", "maybe", "value could not be parsed to a boolean", "type_error.bool"),
        ("restore_faces", 2, "value could not be parsed to a boolean", "type_error.bool"),
        ("styles", "anime", "value is not a valid list", "type_error.list"),
        ("override_settings", "x", "value is not a valid dict", "type_error.dict"),
        ("prompt", ["a cat"], "str type expected", "type_error.str"),
        ("script_args", 5, "value is not a valid list", "type_error.list"),
    ],
)
def test_wrong_types_are_pydantic_v1_422s(
    fake_webui: FakeWebUI, field: str, value: Any, msg: str, kind: str
) -> None:
    r = post(fake_webui, f"{V1}/txt2img", {**SMALL, field: value})
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]}
    assert fake_webui.job_started.is_set() is False


def test_all_field_errors_are_listed_in_model_order(fake_webui: FakeWebUI) -> None:
    r = post(fake_webui, f"{V1}/txt2img", {"width": "w", "steps": "s", "styles": ["ok", [1]]})
    assert [e["loc"] for e in r.json()["detail"]] == [
        ["body", "styles", 1],
        ["body", "steps"],
        ["body", "width"],
    ]


@pytest.mark.parametrize(
    ("field", "value", "echo"),
    [
        ("steps", "3", 3),
        ("steps", 3.9, 3),
        ("steps", True, 1),
        ("cfg_scale", "7", 7.0),
        ("cfg_scale", 5, 5.0),
        ("restore_faces", "yes", True),
        ("restore_faces", 0, False),
        ("prompt", 5, "5"),
        ("styles", ["a", 1], ["a", "1"]),
        ("seed", None, None),
    ],
)
def test_lax_coercion_shows_in_the_echo(
    fake_webui: FakeWebUI, field: str, value: Any, echo: Any
) -> None:
    data = generate(fake_webui, {**SMALL, field: value})
    assert typed(data["parameters"][field]) == typed(echo)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]),
        (b"null", [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]),
        (
            b"[1, 2]",
            [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}],
        ),
    ],
)
def test_missing_or_non_object_body(fake_webui: FakeWebUI, raw: bytes, detail: Any) -> None:
    r = requests.post(
        f"{fake_webui.url}{V1}/txt2img",
        data=raw,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422
    assert r.json() == {"detail": detail}


def test_null_steps_crashes_inside_the_job_like_the_real_server(fake_webui: FakeWebUI) -> None:
    r = post(fake_webui, f"{V1}/txt2img", {**SMALL, "steps": None})
    assert r.status_code == 500
    body = r.json()
    assert list(body) == ["error", "detail", "body", "errors"]
    assert body["error"] == "TypeError" and body["detail"] == "" and body["errors"]
    assert fake_webui.wait_idle()


@pytest.mark.parametrize(
    "title",
    [
        "options set sd_model_checkpoint to non-existent",
        "options set unknown key",
        "txt2img steps='abc'",
        "txt2img malformed JSON body",
        "txt2img unknown script_name",
        "GET on txt2img (wrong method)",
        "unknown endpoint",
        "interrupt while idle",
        "skip while idle",
        "png-info with empty image",
        "png-info with garbage base64",
    ],
)
def test_error_answers_match_the_captures(fake_webui: FakeWebUI, title: str) -> None:
    case = ERRORS[title]
    data = case["body"].encode() if case["body"] not in ("", "null") else b""
    r = requests.request(
        case["method"],
        fake_webui.url + case["path"],
        data=data,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == case["status"]
    assert r.headers["content-type"] == "application/json"
    assert typed(r.json()) == typed(case["answer"])
    assert "www-authenticate" not in r.headers
    assert float(r.headers["x-process-time"]) >= 0


def test_alwayson_and_selectable_script_errors(fake_webui: FakeWebUI) -> None:
    bad = post(fake_webui, f"{V1}/txt2img", {**SMALL, "alwayson_scripts": {"nope": {"args": []}}})
    assert bad.status_code == 422
    assert bad.json()["detail"] == "always on script nope not found"
    wrong = post(
        fake_webui, f"{V1}/txt2img", {**SMALL, "alwayson_scripts": {"X/Y/Z plot": {"args": []}}}
    )
    assert (
        wrong.json()["detail"] == "Cannot have a selectable script in the always on scripts params"
    )
    ok = post(
        fake_webui,
        f"{V1}/txt2img",
        {**SMALL, "script_name": "X/Y/Z Plot", "alwayson_scripts": {"Seed": {"args": []}}},
    )
    assert ok.status_code == 200


def test_img2img_without_init_images_is_404_and_bad_images_500(fake_webui: FakeWebUI) -> None:
    missing = post(fake_webui, f"{V1}/img2img", SMALL)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "HTTPException",
        "detail": "Init image not found",
        "body": "",
        "errors": "",
    }
    garbage = post(fake_webui, f"{V1}/img2img", {**SMALL, "init_images": ["bm90IGFuIGltYWdl"]})
    assert garbage.status_code == 500
    assert garbage.json()["detail"] == "Invalid encoded image"


# --- PNG output ------------------------------------------------------------------------------


def test_png_is_valid_with_parameters_before_idat(fake_webui: FakeWebUI) -> None:
    data = generate(fake_webui, {**SMALL, "width": 96, "height": 72, "seed": 11})
    png = base64.b64decode(data["images"][0])
    kinds = [kind for kind, _ in chunks(png)]
    assert kinds[0] == b"IHDR" and kinds[1] == b"tEXt" and kinds[-1] == b"IEND"
    assert set(kinds[2:-1]) == {b"IDAT"}
    ihdr = dict(chunks(png))[b"IHDR"]
    assert struct.unpack(">IIBBBBB", ihdr) == (96, 72, 8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(d for k, d in chunks(png) if k == b"IDAT"))
    assert len(raw) == 72 * (1 + 3 * 96)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert (image.size, image.mode) == ((96, 72), "RGB")
    assert image.info["parameters"] == data["info"]["infotexts"][0]
    pixels = image.tobytes()
    assert len(set(zip(pixels[0::3], pixels[1::3], pixels[2::3], strict=True))) > 100  # not flat


def test_big_images_span_several_idat_chunks_like_pil_writes(fake_webui: FakeWebUI) -> None:
    png = base64.b64decode(our_png(fake_webui, width=512, height=512))
    idats = [data for kind, data in chunks(png) if kind == b"IDAT"]
    assert len(idats) > 1 and {len(d) for d in idats[:-1]} == {65536}
    assert 0.3 < len(png) / (512 * 512 * 3) < 0.8  # compresses like a real picture, not a flat one
    Image.open(io.BytesIO(png)).load()


def test_png_parameters_off_leaves_the_text_chunk_out(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(png_parameters=False)
    png = base64.b64decode(our_png(fake))
    assert [k for k, _ in chunks(png) if k in (b"tEXt", b"iTXt", b"zTXt")] == []
    fake.png_parameters = True
    assert b"tEXt" in [k for k, _ in chunks(base64.b64decode(our_png(fake)))]


@pytest.mark.parametrize(("prompt", "kind"), [("café au lait", b"tEXt"), ("猫 café", b"iTXt")])
def test_text_chunk_is_latin1_text_or_utf8_itxt_like_pil(
    fake_webui: FakeWebUI, prompt: str, kind: bytes
) -> None:
    data = generate(fake_webui, {**SMALL, "prompt": prompt})
    png = base64.b64decode(data["images"][0])
    assert [k for k, _ in chunks(png)][1] == kind
    assert Image.open(io.BytesIO(png)).info["parameters"] == data["info"]["infotexts"][0]
    assert data["info"]["prompt"] == prompt


def test_width_63_makes_a_56_pixel_image_but_reports_63(fake_webui: FakeWebUI) -> None:
    data = generate(fake_webui, {**SMALL, "width": 63})
    png = base64.b64decode(data["images"][0])
    assert Image.open(io.BytesIO(png)).size == (56, 64)
    assert data["info"]["width"] == 63 and "Size: 63x64" in data["info"]["infotexts"][0]


# --- png-info and extras ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["plain_base64", "with_data_url_prefix"])
def test_png_info_matches_the_capture(fake_webui: FakeWebUI, form: str) -> None:
    image = our_png(
        fake_webui, seed=634212383, cfg_scale=7, override_settings={"CLIP_stop_at_last_layers": 2}
    )
    if form == "with_data_url_prefix":
        image = "data:image/png;base64," + image
    r = post(fake_webui, f"{V1}/png-info", {"image": image})
    assert r.status_code == 200
    assert typed(r.json()) == typed(load("png-info.json")[form]["body"])


def test_png_info_of_an_image_without_parameters(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(png_parameters=False)
    body = post(fake, f"{V1}/png-info", {"image": our_png(fake)}).json()
    assert body["info"] == "" and body["items"] == {}
    assert body["parameters"]["Prompt"] == "" and body["parameters"]["Clip skip"] == "1"


def test_extra_single_image_upscales_and_keeps_parameters(fake_webui: FakeWebUI) -> None:
    case = MORE["extra-single-image Lanczos x2"]
    source = our_png(
        fake_webui, seed=634212383, cfg_scale=7, override_settings={"CLIP_stop_at_last_layers": 2}
    )
    r = post(fake_webui, f"{V1}/extra-single-image", {**case["body"], "image": source})
    assert r.status_code == 200
    assert r.json()["html_info"] == case["response"]["html_info"]
    png = base64.b64decode(r.json()["image"])
    assert chunks(png)[0] == chunks_head(case["response"]["image"])  # 128x128, like the capture
    info = Image.open(io.BytesIO(png)).info
    assert info["parameters"] == Image.open(io.BytesIO(base64.b64decode(source))).info["parameters"]
    assert info["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"


def test_extra_batch_images(fake_webui: FakeWebUI) -> None:
    image = our_png(fake_webui)
    body = {
        "imageList": [{"data": image, "name": "a.png"}] * 2,
        "upscaler_1": "Nearest",
        "resize_mode": 1,
        "upscaling_resize_w": 80,
        "upscaling_resize_h": 40,
    }
    r = post(fake_webui, f"{V1}/extra-batch-images", body)
    assert r.status_code == 200
    assert (
        r.json()["html_info"] == "<p>Postprocess upscale to: 80x40, Postprocess crop to: 80x40, "
        "Postprocess upscaler: Nearest</p>"  # upscaling_crop defaults to true
    )
    sizes = {Image.open(io.BytesIO(base64.b64decode(i))).size for i in r.json()["images"]}
    assert sizes == {(80, 40)}
    missing = post(fake_webui, f"{V1}/extra-batch-images", {"upscaler_1": "Nearest"})
    assert missing.status_code == 422


def test_interrogate(fake_webui: FakeWebUI) -> None:
    image = our_png(fake_webui)
    assert isinstance(
        post(fake_webui, f"{V1}/interrogate", {"image": image}).json()["caption"], str
    )
    bad = post(fake_webui, f"{V1}/interrogate", {"image": image, "model": "blip9"})
    assert (bad.status_code, bad.json()["detail"]) == (404, "Model not found")


# --- models and options ----------------------------------------------------------------------


def model_aliases(fake: FakeWebUI) -> list[str]:
    item = next(m for m in get(fake, f"{V1}/sd-models").json() if m["title"] == COUNTERFEIT)
    return [
        COUNTERFEIT,
        "anime_counterfeitV30_v30",
        "anime/counterfeitV30_v30.safetensors",
        "counterfeitV30_v30",
        "cbfba64e66",
        item["sha256"],
        "counterfeitV30_v30 [cbfba64e66]",
    ]


def test_every_exact_alias_switches_the_model(make_fake_webui: MakeFake) -> None:
    for index in range(7):
        fake = make_fake_webui()
        alias = model_aliases(fake)[index]
        r = post(fake, f"{V1}/options", {"sd_model_checkpoint": alias})
        assert (r.status_code, r.json()) == (200, None)
        options = get(fake, f"{V1}/options").json()
        assert options["sd_model_checkpoint"] == COUNTERFEIT == fake.current_model
        assert options["sd_checkpoint_hash"].startswith("cbfba64e66")
        info = generate(fake, SMALL)["info"]
        assert (info["sd_model_name"], info["sd_model_hash"]) == (
            "counterfeitV30_v30",
            "cbfba64e66",
        )
        fake.stop()


@pytest.mark.parametrize("alias", ["counterfeit", "CounterfeitV30_v30", "cbfba64e6", ""])
def test_near_misses_are_500_runtime_errors(fake_webui: FakeWebUI, alias: str) -> None:
    r = post(fake_webui, f"{V1}/options", {"sd_model_checkpoint": alias})
    assert r.status_code == 500
    assert r.json() == {
        "error": "RuntimeError",
        "detail": "",
        "body": "",
        "errors": f"model {alias!r} not found",
    }
    assert fake_webui.current_model == RANDOM_TITLE


def test_an_alias_of_the_loaded_model_is_stored_as_given(fake_webui: FakeWebUI) -> None:
    case = ERRORS["options set sd_model_checkpoint to existing short name"]
    assert post(fake_webui, case["path"], json.loads(case["body"])).json() is None
    options = get(fake_webui, f"{V1}/options").json()
    readback = ERRORS["options read back after set"]["answer"]
    assert {k: options[k] for k in readback} == readback


def test_a_never_hashed_model_gains_its_hash_when_loaded(fake_webui: FakeWebUI) -> None:
    [before] = [m for m in get(fake_webui, f"{V1}/sd-models").json() if m["hash"] is None]
    assert post(fake_webui, f"{V1}/options", {"sd_model_checkpoint": before["model_name"]}).ok
    [after] = [
        m for m in get(fake_webui, f"{V1}/sd-models").json() if m["filename"] == before["filename"]
    ]
    assert after["hash"] and after["sha256"].startswith(after["hash"])
    assert after["title"] == f"{before['title']} [{after['hash']}]" == fake_webui.current_model
    assert get(fake_webui, f"{V1}/options").json()["sd_model_checkpoint"] == after["title"]


def test_a_failed_load_answers_200_but_reverts(fake_webui: FakeWebUI) -> None:
    fake_webui.fail_next_model_load()
    r = post(fake_webui, f"{V1}/options", {"sd_model_checkpoint": COUNTERFEIT})
    assert (r.status_code, r.json()) == (200, None)
    assert get(fake_webui, f"{V1}/options").json()["sd_model_checkpoint"] == RANDOM_TITLE
    assert fake_webui.current_model == RANDOM_TITLE
    assert post(fake_webui, f"{V1}/options", {"sd_model_checkpoint": COUNTERFEIT}).ok
    assert fake_webui.current_model == COUNTERFEIT


def test_unknown_option_keys_fail_but_earlier_keys_stay_applied(fake_webui: FakeWebUI) -> None:
    r = post(fake_webui, f"{V1}/options", {"samples_format": "jpg", "no_such": 1})
    assert r.status_code == 500 and r.json()["errors"] == "'no_such'"
    assert fake_webui.options["samples_format"] == "jpg"
    assert post(fake_webui, f"{V1}/options", {"no_such": None}).json() is None  # equal: no-op
    ignored = post(fake_webui, f"{V1}/options", {"api_enable_requests": False})
    assert ignored.ok and fake_webui.options["api_enable_requests"] is True


def test_options_come_back_through_the_response_models_coercion(fake_webui: FakeWebUI) -> None:
    assert post(fake_webui, f"{V1}/options", {"CLIP_stop_at_last_layers": 2, "jpeg_quality": 95}).ok
    options = get(fake_webui, f"{V1}/options").json()
    assert typed(options["CLIP_stop_at_last_layers"]) == typed(2.0)
    assert typed(options["jpeg_quality"]) == typed(95.0)
    assert typed(options["show_progress_every_n_steps"]) == typed(10)  # untouched: raw default
    info = generate(fake_webui, SMALL)["info"]
    assert info["clip_skip"] == 2 and "Clip skip: 2," in info["infotexts"][0]


def test_a_wrongly_typed_option_poisons_later_jobs_like_the_real_server(
    fake_webui: FakeWebUI,
) -> None:
    case = ERRORS["options set wrong type for CLIP_stop_at_last_layers"]
    assert post(fake_webui, case["path"], json.loads(case["body"])).json() is None
    poisoned = ERRORS[
        "txt2img AFTER options stored CLIP_stop_at_last_layers='abc' (server-side poisoning)"
    ]
    r = post(fake_webui, poisoned["path"], json.loads(poisoned["body"]))
    assert (r.status_code, r.json()) == (poisoned["status"], poisoned["answer"])


def test_override_settings_apply_to_one_job_and_held_keys_are_restored(
    make_fake_webui: MakeFake,
) -> None:
    fake = make_fake_webui(config_options={"CLIP_stop_at_last_layers": 1})
    body = {
        **SMALL,
        "override_settings": {
            "sd_model_checkpoint": "qteamixQ_gamma",
            "CLIP_stop_at_last_layers": 2,
        },
    }
    info = generate(fake, body)["info"]
    assert (info["sd_model_name"], info["sd_model_hash"], info["clip_skip"]) == (
        "qteamixQ_gamma",
        "58174ec2a4",
        2,
    )
    assert "Model hash: 58174ec2a4, Model: qteamixQ_gamma, Clip skip: 2" in info["infotexts"][0]
    options = get(fake, f"{V1}/options").json()
    assert options["sd_model_checkpoint"] == RANDOM_TITLE
    assert typed(options["CLIP_stop_at_last_layers"]) == typed(1.0)
    assert fake.current_model == "qteamixQ_gamma.safetensors [58174ec2a4]"  # weights stay
    assert generate(fake, SMALL)["info"]["sd_model_name"] == "random-sd15"  # reloaded


def test_the_captured_leak_sequence_replays_on_the_fake(fake_webui: FakeWebUI) -> None:
    capture = load("more/override-settings-leak.json")["sequence"]
    for step in capture:
        if step["request"].startswith("GET"):
            options = get(fake_webui, f"{V1}/options").json()
            seen = {k: typed(options[k]) for k in step["selected_options"]}
            assert seen == typed(step["selected_options"]), step["step"]
        else:
            body = {**step["body"], "sampler_name": "Euler"}
            info = generate(fake_webui, body)["info"]
            assert info["clip_skip"] == step["info_clip_skip"], step["step"]


def _clip(fake: FakeWebUI) -> Any:
    return typed(get(fake, f"{V1}/options").json()["CLIP_stop_at_last_layers"])


@pytest.mark.parametrize("profile", ["a1111", "forge"])
def test_an_override_of_a_key_the_server_does_not_hold_leaks_as_captured(
    make_fake_webui: MakeFake, profile: str
) -> None:
    # fixtures/more/override-settings-leak.json, step by step (Forge: the same process_images)
    fake = make_fake_webui(profile=profile)
    assert _clip(fake) == typed(1)  # not in opts.data: the raw int default
    generate(fake, {**SMALL, "override_settings": {"CLIP_stop_at_last_layers": 2}})
    assert _clip(fake) == typed(2.0)  # stuck, and now held
    assert "Clip skip: 2," in generate(fake, SMALL)["info"]["infotexts"][0]
    generate(fake, {**SMALL, "override_settings": {"CLIP_stop_at_last_layers": 3}})
    assert _clip(fake) == typed(2.0)  # held now: restored, to the leaked value


def test_a_pinned_key_is_restored_after_an_override(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui()
    assert post(fake, f"{V1}/options", {"CLIP_stop_at_last_layers": 1}).ok  # same value: held now
    assert _clip(fake) == typed(1.0)
    generate(fake, {**SMALL, "override_settings": {"CLIP_stop_at_last_layers": 2}})
    assert _clip(fake) == typed(1.0)
    options = get(fake, f"{V1}/options").json()
    assert options["img2img_fix_steps"] is False
    generate(fake, {**SMALL, "override_settings": {"img2img_fix_steps": True}})
    assert get(fake, f"{V1}/options").json()["img2img_fix_steps"] is True  # a bool leaks too


def test_override_not_restored_when_asked(fake_webui: FakeWebUI) -> None:
    body = {
        **SMALL,
        "override_settings": {"CLIP_stop_at_last_layers": 3},
        "override_settings_restore_afterwards": False,
    }
    generate(fake_webui, body)
    assert fake_webui.options["CLIP_stop_at_last_layers"] == 3


def test_an_unknown_override_key_is_a_500_key_error(fake_webui: FakeWebUI) -> None:
    r = post(fake_webui, f"{V1}/txt2img", {**SMALL, "override_settings": {"nope": 1}})
    assert (r.status_code, r.json()["error"], r.json()["errors"]) == (500, "KeyError", "'nope'")


def test_current_model_can_be_set_directly(fake_webui: FakeWebUI) -> None:
    fake_webui.current_model = "qteamixQ_gamma"
    assert fake_webui.current_model == "qteamixQ_gamma.safetensors [58174ec2a4]"
    assert fake_webui.options["sd_model_checkpoint"] == fake_webui.current_model
    with pytest.raises(ValueError, match="no checkpoint"):
        fake_webui.current_model = "missing"


# --- progress, queue, interrupt --------------------------------------------------------------


def test_progress_mid_job_matches_the_busy_capture(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    captured = load("progress-busy.json")
    at_step_8 = next(
        p["body"] for p in captured["polls"] if p["body"]["state"]["sampling_step"] == 8
    )
    fake_webui.pause_at_step(8)
    job = in_background(pool, fake_webui, captured["request"])
    assert fake_webui.wait_paused()
    body = get(fake_webui, f"{V1}/progress", params={"skip_current_image": "false"}).json()
    assert body["progress"] == at_step_8["progress"]  # 0.41000000000000003, the same float
    assert {**body["state"], "job_timestamp": ""} == {**at_step_8["state"], "job_timestamp": ""}
    assert body["current_image"] is None and body["textinfo"] is None
    assert body["eta_relative"] >= 0
    fake_webui.resume()
    assert job.result(timeout=30).status_code == 200
    idle = get(fake_webui, f"{V1}/progress").json()
    after = captured["progress_after_finish"]
    assert {**idle, "state": {**idle["state"], "job_timestamp": ""}} == {
        **after,
        "state": {**after["state"], "job_timestamp": ""},
    }
    assert idle["state"]["job_timestamp"] != "0"


def test_live_preview_appears_every_ten_steps(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    captured = load("progress-busy.json")
    with_image = next(p["body"] for p in captured["polls"] if p["body"]["current_image"])
    fake_webui.pause_at_step(10)
    job = in_background(pool, fake_webui, captured["request"])
    assert fake_webui.wait_paused()
    skipped = get(fake_webui, f"{V1}/progress?skip_current_image=true").json()
    assert skipped["current_image"] is None
    body = get(fake_webui, f"{V1}/progress").json()
    assert body["progress"] == with_image["progress"]
    preview = base64.b64decode(body["current_image"])
    assert chunks(preview)[0] == chunks_head(with_image["current_image"])  # 64x64 for 256x256
    fake_webui.resume()
    assert job.result(timeout=30).ok


def test_the_start_of_a_job_sits_at_001_with_job_count_minus_1(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    fake_webui.pause_at_step(-1)
    job = in_background(pool, fake_webui, {**SMALL, "n_iter": 2})
    assert fake_webui.wait_paused()
    assert fake_webui.job_started.is_set()
    body = get(fake_webui, f"{V1}/progress").json()
    assert body["progress"] == 0.01
    assert (body["state"]["job_count"], body["state"]["job"]) == (-1, "scripts_txt2img")
    fake_webui.resume()
    assert job.result(timeout=30).ok
    fake_webui.pause_at_step(1)
    job = in_background(pool, fake_webui, {**SMALL, "n_iter": 2, "steps": 4})
    assert fake_webui.wait_paused()
    state = get(fake_webui, f"{V1}/progress").json()["state"]
    assert (state["job"], state["job_count"], state["job_no"]) == ("Batch 1 out of 2", 2, 0)
    fake_webui.resume()
    assert job.result(timeout=30).ok


def test_bad_skip_current_image_is_a_query_422(fake_webui: FakeWebUI) -> None:
    r = get(fake_webui, f"{V1}/progress?skip_current_image=maybe")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "skip_current_image"]


def test_interrupt_returns_the_current_batch_and_skips_the_rest(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    fake_webui.pause_at_step(0)
    job = in_background(pool, fake_webui, {**SMALL, "steps": 20, "seed": 1, "n_iter": 3})
    assert fake_webui.wait_paused()
    assert post(fake_webui, f"{V1}/interrupt").json() == {}
    r = job.result(timeout=30)
    assert r.status_code == 200
    data = r.json()
    info = json.loads(data["info"])
    assert len(data["images"]) == len(info["infotexts"]) == 1
    assert info["all_seeds"] == [1, 2, 3]
    assert Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).size == (64, 64)
    state = get(fake_webui, f"{V1}/progress").json()["state"]
    assert (state["job_count"], state["interrupted"]) == (0, True)  # stale until the next job


def test_skip_ends_the_current_batch_and_goes_on(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    fake_webui.pause_at_step(2)
    job = in_background(pool, fake_webui, {**SMALL, "steps": 6, "n_iter": 2})
    assert fake_webui.wait_paused()
    assert post(fake_webui, f"{V1}/skip").json() is None
    data = job.result(timeout=30).json()
    assert len(data["images"]) == 2
    assert get(fake_webui, f"{V1}/progress").json()["state"]["job_no"] == 2


def test_jobs_queue_in_order_and_internal_progress_follows_each_task(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    fake_webui.pause_at_step(1)
    first = in_background(pool, fake_webui, {**SMALL, "steps": 4, "force_task_id": "task(a)"})
    assert fake_webui.wait_paused()
    second = in_background(pool, fake_webui, {**SMALL, "force_task_id": "task(b)"})
    assert fake_webui.wait_queued(1)

    def task(id_task: str, **extra: Any) -> dict[str, Any]:
        r = post(fake_webui, "/internal/progress", {"id_task": id_task, **extra})
        assert r.status_code == 200
        return dict(r.json())

    running = task("task(a)")
    assert (running["active"], running["queued"], running["completed"]) == (True, False, False)
    assert running["progress"] == 0.25 and running["eta"] >= 0
    assert running["textinfo"] is None and running["live_preview"] is None
    assert task("task(b)") == {
        "active": False,
        "queued": True,
        "completed": False,
        "progress": None,
        "eta": None,
        "live_preview": None,
        "id_live_preview": -1,
        "textinfo": "In queue: 1/1",
    }
    assert get(fake_webui, "/internal/pending-tasks").json() == {"size": 1, "tasks": ["task(b)"]}
    assert task("task(zzz)")["textinfo"] == "Waiting..."
    fake_webui.resume()
    assert first.result(timeout=30).ok and second.result(timeout=30).ok
    assert fake_webui.wait_idle()
    done = task("task(a)")
    assert (done["active"], done["queued"], done["completed"]) == (False, False, True)


def test_internal_live_preview_is_a_data_uri_sent_once_per_id(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    fake_webui.pause_at_step(10)
    job = in_background(pool, fake_webui, {**SMALL, "steps": 20, "force_task_id": "t"})
    assert fake_webui.wait_paused()
    first = post(fake_webui, "/internal/progress", {"id_task": "t", "id_live_preview": -1}).json()
    assert first["live_preview"].startswith("data:image/png;base64,iVBORw0KGgo")
    again = post(
        fake_webui,
        "/internal/progress",
        {"id_task": "t", "id_live_preview": first["id_live_preview"]},
    ).json()
    assert again["live_preview"] is None and again["id_live_preview"] == first["id_live_preview"]
    fake_webui.resume()
    assert job.result(timeout=30).ok


def test_generated_task_ids_and_a_memory_of_sixteen(fake_webui: FakeWebUI) -> None:
    for n in range(17):
        generate(fake_webui, {**SMALL, "steps": 1, "force_task_id": f"t{n}"})
    assert post(fake_webui, "/internal/progress", {"id_task": "t0"}).json()["completed"] is False
    assert post(fake_webui, "/internal/progress", {"id_task": "t16"}).json()["completed"] is True
    assert post(fake_webui, "/internal/progress", {"id_task": "t1"}).json()["completed"] is True


def test_a_model_switch_waits_for_the_running_job(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    fake_webui.pause_at_step(1)
    job = in_background(pool, fake_webui, {**SMALL, "steps": 3})
    assert fake_webui.wait_paused()
    switch = in_background(pool, fake_webui, {"sd_model_checkpoint": COUNTERFEIT}, f"{V1}/options")
    assert fake_webui.wait_queued(1)
    assert fake_webui.current_model == RANDOM_TITLE and not switch.done()
    fake_webui.resume()
    assert json.loads(job.result(timeout=30).json()["info"])["sd_model_name"] == "random-sd15"
    assert switch.result(timeout=30).json() is None
    assert fake_webui.current_model == COUNTERFEIT


def test_resume_before_the_pause_point_disarms_it(fake_webui: FakeWebUI) -> None:
    fake_webui.pause_at_step(1)
    fake_webui.resume()
    assert generate(fake_webui, SMALL)["info"]["steps"] == 2
    assert fake_webui.wait_paused(timeout=0) is False


def test_wait_idle_and_job_started(fake_webui: FakeWebUI) -> None:
    assert fake_webui.wait_idle(timeout=1)
    assert not fake_webui.job_started.is_set()
    generate(fake_webui, SMALL)
    assert fake_webui.job_started.is_set()
    assert fake_webui.wait_idle()


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "Not authenticated"),
        ("Bearer abc", "Not authenticated"),
        ("Basic !!!!", "Invalid authentication credentials"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "Invalid authentication credentials"),
        ("Basic " + base64.b64encode(b"tester:wrong").decode(), "Incorrect username or password"),
        ("Basic " + base64.b64encode(b"nobody:secret").decode(), "Incorrect username or password"),
    ],
)
def test_auth_failures_have_three_messages_and_no_challenge(
    make_fake_webui: MakeFake, header: str | None, detail: str
) -> None:
    fake = make_fake_webui(auth=("tester", "secret"))
    headers = {"authorization": header} if header else {}
    r = get(fake, f"{V1}/samplers", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "HTTPException", "detail": detail, "body": "", "errors": ""}
    assert "www-authenticate" not in r.headers and "x-process-time" in r.headers


def test_auth_covers_sdapi_but_not_loras_internal_or_docs(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(auth={"tester": "secret", "other": "pw"})
    assert get(fake, f"{V1}/samplers", auth=("tester", "secret")).status_code == 200
    assert get(fake, f"{V1}/samplers", auth=("other", "pw")).status_code == 200
    assert post(fake, f"{V1}/txt2img", SMALL).json()["detail"] == "Not authenticated"
    for path in (f"{V1}/loras", "/internal/ping", "/openapi.json", "/docs"):
        assert get(fake, path).status_code == 200, path
    assert post(fake, f"{V1}/refresh-loras").status_code == 200
    assert get(fake, f"{V1}/nope").status_code == 404
    broken = requests.post(
        f"{fake.url}{V1}/txt2img",
        data=b"{",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422  # FastAPI parses the body before it checks credentials
    flags = get(fake, f"{V1}/cmd-flags", auth=("tester", "secret")).json()
    assert flags["api_auth"] == "tester:secret,other:pw"


# --- failure injection -----------------------------------------------------------------------


def test_fail_status_default_body_counts_down(fake_webui: FakeWebUI) -> None:
    fake_webui.fail(f"{V1}/samplers", times=2)
    for _ in range(2):
        r = get(fake_webui, f"{V1}/samplers")
        assert r.status_code == 500
        assert r.json() == {
            "error": "RuntimeError",
            "detail": "",
            "body": "",
            "errors": "injected failure",
        }
    assert get(fake_webui, f"{V1}/samplers").status_code == 200
    assert get(fake_webui, f"{V1}/schedulers").status_code == 200


def test_fail_custom_status_body_and_forever(fake_webui: FakeWebUI) -> None:
    fake_webui.fail(f"{V1}/options", 503, times=None)
    for _ in range(3):
        r = get(fake_webui, f"{V1}/options")
        assert (r.status_code, r.json()["detail"]) == (503, "Service Unavailable")
    fake_webui.clear_failures()
    assert get(fake_webui, f"{V1}/options").ok
    fake_webui.fail(f"{V1}/options", 418, {"teapot": True})
    r = get(fake_webui, f"{V1}/options")
    assert (r.status_code, r.json()) == (418, {"teapot": True})


def test_fail_html_is_a_proxy_page(fake_webui: FakeWebUI) -> None:
    fake_webui.fail(f"{V1}/txt2img", mode="html")
    r = post(fake_webui, f"{V1}/txt2img", SMALL)
    assert r.status_code == 502
    assert r.headers["content-type"] == "text/html" and r.headers["server"].startswith("nginx")
    assert "<title>502 Bad Gateway</title>" in r.text and "x-process-time" not in r.headers
    assert fake_webui.job_started.is_set() is False


def test_fail_malformed_is_cut_json(fake_webui: FakeWebUI) -> None:
    fake_webui.fail(f"{V1}/txt2img", mode="malformed")
    r = post(fake_webui, f"{V1}/txt2img", SMALL)
    assert r.status_code == 200 and r.text.startswith('{"images":["iVBOR')
    with pytest.raises(ValueError):
        r.json()


def test_fail_close_drops_the_connection(fake_webui: FakeWebUI) -> None:
    fake_webui.fail(f"{V1}/txt2img", mode="close")
    with pytest.raises(requests.ConnectionError):
        post(fake_webui, f"{V1}/txt2img", SMALL)
    assert len(fake_webui.requests_to(f"{V1}/txt2img")) == 1
    assert post(fake_webui, f"{V1}/txt2img", SMALL).ok


def test_fail_hang_holds_until_released(fake_webui: FakeWebUI, pool: ThreadPoolExecutor) -> None:
    fake_webui.fail(f"{V1}/progress", mode="hang", times=2)
    with pytest.raises(requests.ReadTimeout):  # it never answers, so any read timeout fires
        get(fake_webui, f"{V1}/progress", timeout=(5, 0.05))
    held = pool.submit(get, fake_webui, f"{V1}/progress")
    assert fake_webui.wait_for_request(f"{V1}/progress", count=2)
    fake_webui.release_hangs()
    with pytest.raises(requests.ConnectionError):
        held.result(timeout=30)
    assert get(fake_webui, f"{V1}/progress").ok


@pytest.mark.parametrize("mode", ["bad_image", "not_png", "empty_images"])
def test_fail_image_modes(fake_webui: FakeWebUI, mode: str) -> None:
    fake_webui.fail(f"{V1}/txt2img", mode=mode)  # type: ignore[arg-type]
    data = generate(fake_webui, SMALL)
    assert len(data["info"]["infotexts"]) == 1
    if mode == "empty_images":
        assert data["images"] == []
        return
    if mode == "bad_image":
        with pytest.raises(binascii.Error):
            base64.b64decode(data["images"][0])
        with pytest.raises(binascii.Error):
            base64.b64decode(data["images"][0], validate=True)
    else:
        raw = base64.b64decode(data["images"][0], validate=True)
        assert raw[:3] == b"\xff\xd8\xff"


def test_fail_rejects_unknown_modes(fake_webui: FakeWebUI) -> None:
    with pytest.raises(ValueError, match="unknown failure mode"):
        fake_webui.fail(f"{V1}/txt2img", mode="explode")  # type: ignore[arg-type]


# --- other flavours --------------------------------------------------------------------------


def test_nowebui_has_no_internal_routes(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="a1111-nowebui")
    for path in ("/internal/ping", "/internal/pending-tasks"):
        assert get(fake, path).json() == load("extra/ping-404.json")
    assert post(fake, "/internal/progress", {"id_task": "x"}).status_code == 404
    assert get(fake, f"{V1}/cmd-flags").json()["nowebui"] is True
    assert generate(fake, SMALL)["info"]["version"] == "v1.10.1"


def test_a1111_18_has_combined_sampler_names_and_strict_lookup(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="a1111-1.8")
    assert get(fake, f"{V1}/schedulers").status_code == 404
    names = [s["name"] for s in get(fake, f"{V1}/samplers").json()]
    assert {"DPM++ 2M Karras", "DPM++ 2M", "Euler a"} <= set(names)
    data = generate(fake, {**SMALL, "sampler_name": "DPM++ 2M Karras", "scheduler": "Exponential"})
    assert "scheduler" not in data["parameters"]
    assert "Sampler: DPM++ 2M Karras, CFG scale: 7.0," in data["info"]["infotexts"][0]
    assert data["info"]["infotexts"][0].endswith("Version: v1.8.0")
    for name in ("k_euler_a", "No Such Sampler"):
        r = post(fake, f"{V1}/txt2img", {**SMALL, "sampler_name": name})
        assert (r.status_code, r.json()["detail"]) == (404, "Sampler not found")


def test_forge_has_fastapi_errors_pydantic2_and_lazy_loading(
    make_fake_webui: MakeFake, pool: ThreadPoolExecutor
) -> None:
    fake = make_fake_webui(profile="forge", auth=("u", "p"))
    r = get(fake, f"{V1}/samplers")
    assert (r.status_code, r.json()) == (401, {"detail": "Not authenticated"})
    assert r.headers["www-authenticate"] == "Basic" and "x-process-time" not in r.headers
    auth = ("u", "p")
    bad = requests.post(f"{fake.url}{V1}/txt2img", json={"steps": "abc"}, auth=auth, timeout=10)
    assert bad.json() == {
        "detail": [
            {
                "type": "int_parsing",
                "loc": ["body", "steps"],
                "input": "abc",
                "msg": "Input should be a valid integer, unable to parse string as an integer",
            }
        ]
    }
    missing = requests.post(
        f"{fake.url}{V1}/options", json={"sd_model_checkpoint": "x"}, auth=auth, timeout=10
    )
    assert missing.json() == {
        "error": "RuntimeError",
        "detail": "",
        "body": "",
        "message": "model 'x' not found",
    }
    assert requests.get(f"{fake.url}{V1}/sd-vae", auth=auth, timeout=10).status_code == 404
    assert requests.get(f"{fake.url}{V1}/sd-modules", auth=auth, timeout=10).json()[0]["model_name"]
    fake.pause_at_step(1)
    job = pool.submit(requests.post, f"{fake.url}{V1}/txt2img", json=SMALL, auth=auth, timeout=30)
    assert fake.wait_paused()
    switch = requests.post(
        f"{fake.url}{V1}/options", json={"sd_model_checkpoint": COUNTERFEIT}, auth=auth, timeout=10
    )
    assert switch.json() is None and fake.current_model == RANDOM_TITLE  # recorded, not loaded
    fake.resume()
    assert job.result(timeout=30).ok
    later = requests.post(f"{fake.url}{V1}/txt2img", json=SMALL, auth=auth, timeout=30).json()
    info = json.loads(later["info"])
    assert info["sd_model_name"] == "counterfeitV30_v30" and info["version"] == "f2.0.1v1.10.1"
    assert later["parameters"]["distilled_cfg_scale"] == 3.5
    dpm = requests.get(f"{fake.url}{V1}/samplers", auth=auth, timeout=10).json()[1]
    assert dpm["options"]["second_order"] is True


def test_sdnext_auth_says_unauthorized(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="sdnext", auth=("u", "p"))
    assert get(fake, f"{V1}/samplers").json()["detail"] == "Unauthorized"


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        FakeWebUI(profile="comfy")


# --- HTTP behaviour --------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(fake_webui: FakeWebUI) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake_webui.port, timeout=10)
    try:
        conn.request("GET", f"{V1}/samplers")
        first = conn.getresponse()
        assert first.status == 200 and len(first.read()) == int(first.headers["content-length"])
        sock = conn.sock
        payload = json.dumps(SMALL)
        conn.request("POST", f"{V1}/txt2img", payload, {"content-type": "application/json"})
        second = conn.getresponse()
        assert second.status == 200 and json.loads(second.read())["images"]
        assert conn.sock is sock
    finally:
        conn.close()


def test_chunked_request_bodies_are_read(fake_webui: FakeWebUI) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake_webui.port, timeout=10)
    try:
        body = iter([json.dumps(SMALL)[:10].encode(), json.dumps(SMALL)[10:].encode()])
        conn.request(
            "POST", f"{V1}/txt2img", body, {"content-type": "application/json"}, encode_chunked=True
        )
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["parameters"]["steps"] == 2
    finally:
        conn.close()


def test_gzip_when_asked_and_large(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui()
    big = requests.get(f"{fake.url}{V1}/samplers", headers={"accept-encoding": "gzip"}, timeout=10)
    assert big.headers["content-encoding"] == "gzip" and big.json()[0]["name"] == "DPM++ 2M"
    small = requests.get(
        f"{fake.url}{V1}/progress", headers={"accept-encoding": "gzip"}, timeout=10
    )
    assert "content-encoding" not in small.headers
    plain = requests.get(
        f"{fake.url}{V1}/samplers", headers={"accept-encoding": "identity"}, timeout=10
    )
    assert "content-encoding" not in plain.headers
    fake.gzip_responses = False
    assert "content-encoding" not in get(fake, f"{V1}/samplers").headers


def test_head_is_405_and_a_trailing_slash_redirects(fake_webui: FakeWebUI) -> None:
    assert requests.head(f"{fake_webui.url}{V1}/samplers", timeout=10).status_code == 405
    r = requests.get(f"{fake_webui.url}{V1}/samplers/", timeout=10, allow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, f"{V1}/samplers")


def test_requests_are_recorded(fake_webui: FakeWebUI) -> None:
    post(fake_webui, f"{V1}/txt2img", SMALL, headers={"X-Test": "1"})
    get(fake_webui, f"{V1}/progress?skip_current_image=true")
    requests.post(f"{fake_webui.url}{V1}/png-info", data=b"not json", timeout=10)
    first, second, third = fake_webui.requests
    assert (first.method, first.path, first.json) == ("POST", f"{V1}/txt2img", SMALL)
    assert first.headers["x-test"] == "1" and json.loads(first.raw) == SMALL
    assert second.query == {"skip_current_image": "true"} and second.json is None
    assert (third.json, third.raw) == (None, b"not json")
    assert fake_webui.requests_to(f"{V1}/progress") == [second]
    fake_webui.clear_requests()
    assert fake_webui.requests == []


def test_stop_ends_paused_jobs_and_is_idempotent(
    make_fake_webui: MakeFake, pool: ThreadPoolExecutor
) -> None:
    fake = make_fake_webui()
    url = fake.url
    fake.pause_at_step(0)
    job = in_background(pool, fake, SMALL)
    assert fake.wait_paused()
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        job.result(timeout=30)
    fake.stop()
    with pytest.raises(RuntimeError):
        _ = fake.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + f"{V1}/progress", timeout=5)


def test_context_manager_starts_and_stops() -> None:
    with FakeWebUI(step_delay=0.0) as fake:
        assert get(fake, f"{V1}/progress").ok
        url = fake.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + f"{V1}/progress", timeout=5)


# --- the command line ------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sdcli.testing.fake_webui", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_interrupted_and_exits_cleanly(stop_signal: signal.Signals) -> None:
    proc = run_cli("--step-delay", "0", "--api-auth", "u:p", "--no-png-parameters")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        assert requests.get(url.group(0) + f"{V1}/samplers", timeout=10).status_code == 401
        data = requests.post(
            url.group(0) + f"{V1}/txt2img", json=SMALL, auth=("u", "p"), timeout=30
        ).json()
        png = base64.b64decode(data["images"][0])
        assert b"tEXt" not in [k for k, _ in chunks(png)]
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_rejects_bad_auth_syntax() -> None:
    proc = run_cli("--api-auth", "nocolon")
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_detach_returns_once_listening_and_stops_with_kill() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sdcli.testing.fake_webui", "--port", "0", "--detach"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", r.stderr)
        assert url, r.stderr
        # It already listens when --detach returns: no sleep needed before the first request.
        assert requests.get(url.group(0) + f"{V1}/samplers", timeout=10).ok
        assert f"kill {pid}" in r.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30  # a safety net: it stops within a poll of its loop
    while not _stopped(pid):
        assert time.monotonic() < deadline, "the detached fake did not stop on SIGTERM"
        time.sleep(0.05)


def _stopped(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it: either way it serves no more."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_cli_detach_reports_a_port_in_use() -> None:
    with FakeWebUI() as fake:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "sdcli.testing.fake_webui",
                "--port",
                str(fake.port),
                "--detach",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert r.returncode == 1
    assert "cannot listen" in r.stderr and r.stdout == ""


def test_live_previews_follow_the_capture_every_n_steps(
    fake_webui: FakeWebUI, pool: ThreadPoolExecutor
) -> None:
    """more/live-preview.json: show_progress_every_n_steps=2, a 6-step 64x64 job: none at step
    1, a 16x16 PNG at step 2 (id 1), a data URI once per id from /internal/progress (then the
    id sent is echoed), bare base64 from /sdapi/v1/progress."""
    captured = json.loads((FIXTURES / "more" / "live-preview.json").read_text(encoding="utf-8"))
    polls = captured[
        "A: 6-step txt2img with force_task_id, POST /internal/progress polled every 0.5 s"
    ]["polls"]
    previews = [p["body"] for p in polls if p["body"]["live_preview"]]
    assert [p["id_live_preview"] for p in previews] == [1, 2]
    api_polls = captured["B: 6-step txt2img, GET /sdapi/v1/progress polled every 0.5 s"]["polls"]
    bare = next(p["body"]["current_image"] for p in api_polls if p["body"]["current_image"])
    assert post(fake_webui, f"{V1}/options", {"show_progress_every_n_steps": 2}).ok
    request = captured[next(k for k in captured if k.startswith("A:"))]["request"]

    def at_step(step: int, sent_id: int) -> dict[str, Any]:
        body = {
            "id_task": request["force_task_id"],
            "id_live_preview": sent_id,
            "live_preview": True,
        }
        answer: dict[str, Any] = post(fake_webui, "/internal/progress", body).json()
        return answer

    fake_webui.pause_at_step(1)
    job = in_background(pool, fake_webui, request)
    assert fake_webui.wait_paused()
    assert at_step(1, -1)["live_preview"] is None  # step 1 of "every 2": none yet
    fake_webui.resume()
    assert job.result(timeout=30).ok
    fake_webui.pause_at_step(2)
    job = in_background(pool, fake_webui, request)
    assert fake_webui.wait_paused()
    first = at_step(2, -1)
    prefix = "data:image/png;base64,"
    assert first["live_preview"].startswith(prefix) and previews[0]["live_preview"].startswith(
        prefix
    )
    ours = base64.b64decode(first["live_preview"][len(prefix) :])
    assert chunks(ours)[0] == chunks_head(previews[0]["live_preview"][len(prefix) :])  # 16x16
    assert first["id_live_preview"] == 1
    again = at_step(2, 1)
    assert (again["live_preview"], again["id_live_preview"]) == (None, 1)  # once per id
    api = get(fake_webui, f"{V1}/progress", params={"skip_current_image": "false"}).json()
    assert not api["current_image"].startswith("data:")  # bare base64 here
    assert chunks(base64.b64decode(api["current_image"]))[0] == chunks_head(bare)
    fake_webui.resume()
    assert job.result(timeout=30).ok
