"""Contract tests: what sdcli sends must be what the real server understands.

The web UI drops unknown request fields silently, so a key it does not know is a setting the
user asked for and never got. Every body sdcli sends is checked against the OpenAPI schema
captured from a live v1.10.1 server (tests/fixtures/openapi.json), and every captured
response must parse into our dataclasses.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdcli.apiparse import parse_generation, parse_model, parse_progress
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import invoke

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA = json.loads((FIXTURES / "openapi.json").read_text(encoding="utf-8"))
COMPONENTS = SCHEMA["components"]["schemas"]
TXT2IMG_MODEL = COMPONENTS["StableDiffusionProcessingTxt2Img"]
OPTIONS_MODEL = COMPONENTS["Options"]
SAMPLE_PNG = FIXTURES / "sample.png"

JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def check_value(value: Any, schema: dict[str, Any], where: str) -> None:
    if "$ref" in schema:
        schema = COMPONENTS[schema["$ref"].rsplit("/", 1)[-1]]
    alternatives = schema.get("anyOf") or schema.get("allOf")
    if alternatives:
        errors = []
        for alt in alternatives:
            try:
                check_value(value, alt, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: {value!r} matches none of {errors}")
    kind = schema.get("type")
    if kind is None:
        return
    assert value is not None, f"{where}: JSON null sent (the server may crash on it)"
    assert JSON_TYPES[kind](value), f"{where}: {value!r} is not {kind}"
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            check_value(item, schema["items"], f"{where}[{i}]")


def check_txt2img_body(body: dict[str, Any]) -> None:
    properties = TXT2IMG_MODEL["properties"]
    for key, value in body.items():
        assert key in properties, f"{key!r} is not a txt2img field: the server would drop it"
        check_value(value, properties[key], key)
    for key, value in (body.get("override_settings") or {}).items():
        assert key in OPTIONS_MODEL["properties"], f"override_settings.{key} is not an option"
        if value is not None and key != "sd_model_checkpoint":
            check_value(value, OPTIONS_MODEL["properties"][key], f"override_settings.{key}")


FLAG_SETS = [
    ["-p", "chibi"],
    ["-p", "sd15"],
    ["-p", "sdxl"],
    ["-p", "draft"],
    ["-p", "chibi", "-p", "draft"],
    ["--negative", "blurry", "--steps", "3", "--cfg", "4.5", "--seed", "12"],
    ["--sampler", "DPM++ 2M Karras"],
    ["--sampler", "Euler a", "--scheduler", "exponential"],
    ["--clip-skip", "3", "--size", "640x448", "-b", "2"],
    ["-W", "768", "-H", "512", "-c", "2"],
    ["--model", "counterfeit"],
    ["--model", "dreamshaper_8"],
    ["--set", "enable_hr=true", "--set", "denoising_strength=0.4", "--set", "hr_scale=1.5"],
    ["--set", "override_settings.sd_vae=Automatic", "--set", "tiling=true"],
    ["--set", 'styles=["a"]', "--set", "subseed=5", "--set", "subseed_strength=0.2"],
    ["--from-image", str(SAMPLE_PNG)],
]


@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: " ".join(f)[:40])
def test_every_generate_body_fits_the_servers_schema(
    flags: list[str], fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = invoke(["--url", fake_webui.url, "generate", *flags, "a cat", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.stderr
    bodies = [q.json for q in fake_webui.requests_to("/sdapi/v1/txt2img")]
    assert bodies
    for body in bodies:
        check_txt2img_body(body)


def test_set_model_body_is_a_known_option(fake_webui: FakeWebUI) -> None:
    r = invoke(["--url", fake_webui.url, "set-model", "qteamix"])
    assert r.exit_code == 0, r.stderr
    posts = [q.json for q in fake_webui.requests_to("/sdapi/v1/options") if q.method == "POST"]
    assert posts == [{"sd_model_checkpoint": "qteamixQ_gamma.safetensors [58174ec2a4]"}]
    for body in posts:
        assert set(body) <= set(OPTIONS_MODEL["properties"])


def test_the_checker_catches_what_the_server_would_drop() -> None:
    with pytest.raises(AssertionError, match="clip_skip"):
        check_txt2img_body({"prompt": "x", "clip_skip": 2})
    with pytest.raises(AssertionError, match="not integer"):
        check_txt2img_body({"steps": "20"})
    with pytest.raises(AssertionError, match="null"):
        check_txt2img_body({"steps": None})
    with pytest.raises(AssertionError, match="not an option"):
        check_txt2img_body({"override_settings": {"clip_skip": 2}})


def _with_real_images(response: dict[str, Any]) -> dict[str, Any]:
    """Captured images are cut to 200 characters: put a real PNG in their place."""
    png = base64.b64encode(SAMPLE_PNG.read_bytes()).decode()
    return {**response, "images": [png for _ in response["images"]]}


@pytest.mark.parametrize("name", ["txt2img-response.json", "txt2img-256-20steps-response.json"])
def test_captured_generation_responses_parse(name: str) -> None:
    raw = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    result = parse_generation(_with_real_images(raw))
    info = json.loads(raw["info"])
    assert [i.seed for i in result.images] == info["all_seeds"]
    assert [i.infotext for i in result.images] == info["infotexts"]
    assert result.info["sd_model_name"] == "random-sd15"


def test_captured_progress_polls_parse() -> None:
    idle = parse_progress(json.loads((FIXTURES / "progress.json").read_text(encoding="utf-8")))
    assert idle.idle
    busy = json.loads((FIXTURES / "progress-busy.json").read_text(encoding="utf-8"))
    polls = [parse_progress(p["body"]) for p in busy["polls"] if p["status"] == 200]
    assert polls and all(not p.idle for p in polls)
    assert max(p.sampling_step for p in polls) > 0


def test_captured_model_list_parses() -> None:
    items = json.loads((FIXTURES / "sd-models-loaded.json").read_text(encoding="utf-8"))
    model = parse_model(items[0])
    assert (model.title, model.name, model.hash) == (
        "random-sd15.safetensors [6d338e2388]",
        "random-sd15.safetensors",
        "6d338e2388",
    )
