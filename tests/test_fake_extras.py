"""The fake beyond txt2img: img2img with a mask, extras, interrogate and the lists, as captured.

Each test replays one case of fixtures/more/img2img-hires-extras-interrogate.json (with images
of our own: the capture's are cut short) and compares what the capture shows.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from sdcli.testing.fake_webui import FakeWebUI

CASES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures/more/img2img-hires-extras-interrogate.json").read_text()
)
V1 = "/sdapi/v1"
SMALL = {
    "prompt": "a cat",
    "steps": 2,
    "width": 64,
    "height": 64,
    "sampler_name": "Euler",
    "seed": 7,
}


def post(fake: FakeWebUI, path: str, body: Any) -> requests.Response:
    return requests.post(fake.url + V1 + path, json=body, timeout=30)


def png(width: int, height: int, *, text: dict[str, str] | None = None) -> str:
    """A plain PNG (no parameters chunk unless given), base64."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 50)).save(out, "PNG", pnginfo=info)
    return base64.b64encode(out.getvalue()).decode()


def half_mask() -> str:
    """The capture's mask: left half black, right half white, 64x64."""
    image = Image.new("L", (64, 64), 0)
    image.paste(255, (32, 0, 64, 64))
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def decoded(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def with_images(body: dict[str, Any], **images: Any) -> dict[str, Any]:
    return {**body, **images}


@pytest.mark.parametrize(
    "title",
    [
        "img2img mask inpainting_fill=1 mask_blur=4 denoise 0.6",
        "img2img mask inpaint_full_res=true padding 8, data: prefix",
        "img2img 96x64 init, resize_mode=1 (crop), no mask, default denoise",
        "img2img include_init_images=true",
    ],
)
def test_img2img_answers_like_the_capture(fake_webui: FakeWebUI, title: str) -> None:
    case = CASES[title]
    body = dict(case["body"])
    prefix = "data:image/png;base64," if body["init_images"][0].startswith("data:") else ""
    init = prefix + png(96 if "96x64" in title else 64, 64)
    body["init_images"] = [init]
    if "mask" in body:
        body["mask"] = prefix + half_mask()
    r = post(fake_webui, "/img2img", body)
    assert r.status_code == 200, r.text
    ours = r.json()
    image = decoded(ours["images"][0])
    want = case["images_png"][0]
    assert list(image.size) == want["size"]
    captured = want["text"]["parameters"]
    model = "Model hash: 1b9a98fd9d, Model: qteamixQ_gamma"
    assert image.info["parameters"] == captured.replace(model, _model_part(image))
    params = ours["parameters"]
    for key in ("denoising_strength", "mask_blur", "inpaint_full_res", "inpainting_fill"):
        assert params[key] == case["response"]["parameters"][key], key
    if body.get("include_init_images"):
        assert params["init_images"] == [init]
    else:
        assert params["init_images"] is None and params["mask"] is None


def _model_part(image: Image.Image) -> str:
    """Our fake's model differs from the capture's; everything else must be the same."""
    text = str(image.info["parameters"])
    start = text.index("Model hash: ")
    end = text.index(", ", text.index("Model: ", start))
    return text[start:end]


@pytest.mark.parametrize("title", ["img2img no init_images", "img2img bad base64"])
def test_img2img_refusals_are_the_captured_ones(fake_webui: FakeWebUI, title: str) -> None:
    case = CASES[title]
    r = post(fake_webui, "/img2img", case["body"])
    assert (r.status_code, r.json()) == (case["status"], case["response"])


def test_a_mask_of_another_size_is_resized_silently(fake_webui: FakeWebUI) -> None:
    """processing.py resizes the mask to the job's size: no error, whatever its size."""
    body = {**SMALL, "init_images": [png(64, 64)], "mask": png(40, 24)}
    r = post(fake_webui, "/img2img", body)
    assert r.status_code == 200
    assert decoded(r.json()["images"][0]).size == (64, 64)


@pytest.mark.parametrize(
    "title",
    [
        "extra-single-image Lanczos x2",
        "extra-single-image Nearest + Lanczos 0.5, to 100x80 crop",
        "extra-single-image upscaler None",
        "extra-single-image defaults only",
        "extra-single-image R-ESRGAN 4x+ (weights missing)",
    ],
)
def test_extra_single_image_like_the_capture(fake_webui: FakeWebUI, title: str) -> None:
    case = CASES[title]
    r = post(fake_webui, "/extra-single-image", {**case["body"], "image": png(64, 64)})
    assert r.status_code == 200, r.text
    ours = r.json()
    assert ours["html_info"] == case["response"]["html_info"]
    image = decoded(ours["image"])
    want = case["images_png"][0]
    assert list(image.size) == want["size"]
    assert image.info == want["text"]


def test_extras_keep_the_inputs_parameters_chunk(fake_webui: FakeWebUI) -> None:
    case = CASES["extra-single-image of a txt2img PNG (parameters chunk) Lanczos x2"]
    want = case["images_png"][0]
    image_in = png(64, 64, text={"parameters": want["text"]["parameters"]})
    r = post(fake_webui, "/extra-single-image", {**case["body"], "image": image_in})
    image = decoded(r.json()["image"])
    assert image.info == want["text"]
    assert list(image.size) == want["size"]


def test_extra_batch_images_like_the_capture(fake_webui: FakeWebUI) -> None:
    case = CASES["extra-batch-images Lanczos x1.5 two images"]
    body = dict(case["body"])
    body["imageList"] = [
        {"data": png(64, 64), "name": "a.png"},
        {"data": "data:image/png;base64," + png(96, 64), "name": "b.png"},
    ]
    r = post(fake_webui, "/extra-batch-images", body)
    assert r.status_code == 200, r.text
    ours = r.json()
    assert ours["html_info"] == case["response"]["html_info"]
    got = [decoded(b) for b in ours["images"]]
    assert [list(i.size) for i in got] == [w["size"] for w in case["images_png"]]
    assert [i.info for i in got] == [w["text"] for w in case["images_png"]]


def test_an_unknown_upscaler_is_the_captured_500(fake_webui: FakeWebUI) -> None:
    case = CASES["extra-single-image unknown upscaler"]
    r = post(fake_webui, "/extra-single-image", {**case["body"], "image": png(64, 64)})
    assert (r.status_code, r.json()) == (case["status"], case["response"])
    second = {**case["body"], "upscaler_1": "Lanczos", "upscaler_2": "NoSuchUpscaler"}
    r = post(fake_webui, "/extra-single-image", {**second, "image": png(64, 64)})
    assert r.status_code == 500 and "NoSuchUpscaler" in r.json()["errors"]


def test_face_restoration_is_recorded_after_the_upscale(fake_webui: FakeWebUI) -> None:
    body = {"image": png(64, 64), "upscaler_1": "Lanczos", "gfpgan_visibility": 0.5}
    image = decoded(post(fake_webui, "/extra-single-image", body).json()["image"])
    assert image.info["postprocessing"] == (
        "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos, GFPGAN visibility: 0.5"
    )


@pytest.mark.parametrize("title", ["interrogate unknown model", "interrogate no image"])
def test_interrogate_refusals_are_the_captured_ones(fake_webui: FakeWebUI, title: str) -> None:
    case = CASES[title]
    body = dict(case["body"])
    if "image" in body:
        body["image"] = png(64, 64)
    r = post(fake_webui, "/interrogate", body)
    assert (r.status_code, r.json()) == (case["status"], case["response"])


def test_interrogate_without_the_weights_answers_as_captured(fake_webui: FakeWebUI) -> None:
    fake_webui.remove_interrogator_weights()
    clip = CASES["interrogate clip"]
    first = CASES["interrogate deepdanbooru"]
    again = CASES["interrogate deepdanbooru again (after the first call failed)"]
    for case in (clip, first, again):
        r = post(fake_webui, "/interrogate", {**case["body"], "image": png(64, 64)})
        assert (r.status_code, r.json()) == (case["status"], case["response"])


def test_interrogate_with_the_weights_gives_captions(fake_webui: FakeWebUI) -> None:
    r = post(fake_webui, "/interrogate", {"image": png(64, 64), "model": "deepdanbooru"})
    assert r.status_code == 200
    assert r.json()["caption"].startswith("1girl, solo")


def test_a_list_a_test_fills_in_replaces_the_capture(fake_webui: FakeWebUI) -> None:
    assert requests.get(fake_webui.url + V1 + "/loras", timeout=30).json() == []
    loras = [{"name": "detail", "alias": "detail", "path": "/x/detail.safetensors", "metadata": {}}]
    fake_webui.serve_list("loras", loras)
    assert requests.get(fake_webui.url + V1 + "/loras", timeout=30).json() == loras
