"""The fake's sdnext profile answers as a live SD.Next did: one test per capture file.

The captures (tests/fixtures/sdnext/, from SD.Next master 058a7f0cf of 2026-07-23) are replayed
against the fake: same request, same status, same body shape, and the same infotext byte for byte
where the capture's seed fixes it.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from sdcli.testing.fake_webui import FakeWebUI

CAPTURES = Path(__file__).parent / "fixtures" / "sdnext"
V1 = "/sdapi/v1/"
MakeFake = Callable[..., FakeWebUI]


def entries(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((CAPTURES / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture
def sdnext(make_fake_webui: MakeFake) -> FakeWebUI:
    return make_fake_webui(profile="sdnext")


def send(fake: FakeWebUI, entry: dict[str, Any]) -> requests.Response:
    req = entry["request"]
    url = fake.url + req["path"]
    if "body_raw" in req:
        return requests.request(
            req["method"],
            url,
            data=req["body_raw"],
            headers={"content-type": "application/json"},
            timeout=30,
        )
    return requests.request(req["method"], url, json=req.get("body"), timeout=30)


def shape(value: Any) -> Any:
    """Keys of objects (and of a list's first item): what a client may rely on."""
    if isinstance(value, dict):
        return sorted(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return ["list of", sorted(value[0])]
    return type(value).__name__


def decoded(image_b64: str) -> dict[str, Any]:
    """Format, size and stored infotext of one answer image, as the capture's `*_decoded`."""
    data = base64.b64decode(image_b64)
    with Image.open(io.BytesIO(data)) as image:
        out: dict[str, Any] = {"format": image.format, "width": image.width, "height": image.height}
        if image.format == "JPEG":
            raw = image.getexif().get_ifd(0x8769).get(0x9286, b"")
            out["exif_usercomment_prefix"] = repr(raw[:8])
            out["exif_usercomment"] = raw[8:].decode("utf-16-be")
        else:
            out["text_chunks"] = dict(image.text)
    return out


def check_like_capture(fake: FakeWebUI, entry: dict[str, Any]) -> requests.Response:
    """Replay one entry: same status, same body shape, same images where the seed fixes them."""
    got = send(fake, entry)
    want = entry["response"]
    assert got.status_code == want["status"], (entry["request"], got.text[:300])
    if want["body"] is None:
        assert got.content == b""
        return got
    body = got.json()
    expected = want["body"]
    if "body_first_entry" in want:  # a list the capture cut down to names
        expected = [want["body_first_entry"]]
    if "filtered" in str(want.get("body_note", "")) and isinstance(expected, dict):
        present = {k for k, v in expected.items() if v != "(absent)"}
        assert present <= set(body) and not (set(expected) - present) & set(body)
    else:
        assert shape(body) == shape(expected), entry["request"]["path"]
    for image, expected in zip(
        body.get("images", []) if isinstance(body, dict) else [],
        want.get("images_decoded(added)", []),
        strict=True,
    ):
        seen = decoded(image)
        for key in ("format", "width", "height", "exif_usercomment_prefix", "text_chunks"):
            if key in expected:
                assert seen[key] == expected[key], key
        if "exif_usercomment" in expected:
            text = expected["exif_usercomment"]
            assert seen["exif_usercomment"].startswith(text.rsplit("...", 1)[0])
    return got


def test_basics(sdnext: FakeWebUI) -> None:
    by_path = {e["request"]["path"]: e for e in entries("basics.json")}
    for entry in by_path.values():
        check_like_capture(sdnext, entry)
    assert send(sdnext, by_path[V1 + "version"]).json()["app"] == "sd.next"
    titles = [m["title"] for m in send(sdnext, by_path[V1 + "sd-models"]).json()]
    for captured in by_path[V1 + "sd-models"]["response"]["body"]:
        assert captured["title"] in titles  # no .safetensors, the folder kept
    samplers = send(sdnext, by_path[V1 + "samplers"]).json()
    assert len(samplers) == 114 and "Default" not in [s["name"] for s in samplers]
    assert samplers[:10] == by_path[V1 + "samplers"]["response"]["body"]
    broken = send(sdnext, by_path[V1 + "schedulers"]).json()
    assert broken["error"] == "ResponseValidationError" and broken["detail"] == ""
    assert broken["errors"].startswith("23 validation errors:\n")
    names = [u["name"] for u in send(sdnext, by_path[V1 + "upscalers"]).json()]
    assert len(names) == 51 and "Latent Bilinear" in names and "Latent" not in names
    options = send(sdnext, by_path[V1 + "options"]).json()
    assert len(options) == 33 and options["clip_skip"] == 1
    for absent in ("samples_format", "CLIP_stop_at_last_layers", "schedulers_sigma"):
        assert absent not in options
    assert (
        send(sdnext, by_path[V1 + "checkpoint"]).json()
        == (by_path[V1 + "checkpoint"]["response"]["body"])
    )
    assert requests.get(sdnext.url + "/internal/ping", timeout=10).status_code == 404


def test_options(sdnext: FakeWebUI) -> None:
    sdnext.model_load_delay = 0.05
    for entry in entries("options.json"):
        got = check_like_capture(sdnext, entry)
        if entry["request"]["method"] == "POST":
            assert got.json() == entry["response"]["body"]  # {"updated": [{KEY: changed}]}
    last = entries("options.json")[-1]["response"]["body"]
    assert send(sdnext, entries("options.json")[-1]).json() == last


def test_txt2img_clip_skip(sdnext: FakeWebUI) -> None:
    field, override, options = entries("txt2img-clip-skip.json")
    got = check_like_capture(sdnext, field).json()
    info = json.loads(got["info"])
    assert info["clip_skip"] == 2 and "sd_model_name" not in info
    assert list(info) == list(json.loads(field["response"]["body"]["info"]))
    assert list(got["parameters"]) == list(field["response"]["body"]["parameters"])
    ignored = check_like_capture(sdnext, override).json()
    assert json.loads(ignored["info"])["clip_skip"] == 1  # override_settings: ignored
    assert "CLiP-skip" not in json.loads(ignored["info"])["infotexts"][0]
    assert send(sdnext, options).json() == options["response"]["body"]


def test_txt2img_sampler_errors(sdnext: FakeWebUI) -> None:
    combined, typo, scheduler = entries("txt2img-sampler-errors.json")
    for entry in (combined, typo):
        assert check_like_capture(sdnext, entry).json() == entry["response"]["body"]
    got = check_like_capture(sdnext, scheduler).json()  # `scheduler` is not a field: ignored
    assert "Scheduler: DPMSolverMultistepScheduler" in json.loads(got["info"])["infotexts"][0]


def test_txt2img_template(sdnext: FakeWebUI) -> None:
    styles, wildcards, style = entries("txt2img-template.json")
    listed = check_like_capture(sdnext, styles).json()
    assert [s["name"] for s in listed] == [s["name"] for s in styles["response"]["body"]]
    for entry in (wildcards, style):
        got = check_like_capture(sdnext, entry).json()
        want = json.loads(entry["response"]["body"]["info"])
        assert json.loads(got["info"])["infotexts"] == want["infotexts"]


def test_txt2img_formats(sdnext: FakeWebUI) -> None:
    for entry in entries("txt2img-formats.json"):
        check_like_capture(sdnext, entry)  # JPEG, PNG after the option, JPEG despite override


def test_txt2img_hires(sdnext: FakeWebUI) -> None:
    for entry in entries("txt2img-hires.json"):
        got = check_like_capture(sdnext, entry).json()
        want = json.loads(entry["response"]["body"]["info"])
        assert json.loads(got["info"])["infotexts"] == want["infotexts"]


def test_history(sdnext: FakeWebUI) -> None:
    (entry,) = entries("history.json")
    got = check_like_capture(sdnext, entry).json()
    assert {item["op"] for item in got} <= {"begin", "end"}


def test_model_load_failure(sdnext: FakeWebUI) -> None:
    for entry in entries("model-load-failure.json"):
        got = check_like_capture(sdnext, entry)
        path = entry["request"]["path"]
        if path == V1 + "checkpoint":
            assert got.json() == {"type": None, "class": None}
        if path == V1 + "options" and entry["request"]["method"] == "GET":
            assert got.json()["sd_model_checkpoint"] == "no_such_model"  # the setting is kept
        if path == V1 + "txt2img" and not entry["response"]["body"]["images"]:
            assert got.json()["images"] == [] and got.json()["info"] == ""


def test_errors(sdnext: FakeWebUI) -> None:
    for entry in entries("errors.json"):
        got = check_like_capture(sdnext, entry)
        assert got.json() == entry["response"]["body"]


def _job(fake: FakeWebUI, body: dict[str, Any], box: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        box["answer"] = requests.post(fake.url + V1 + "txt2img", json=body, timeout=30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_progress(sdnext: FakeWebUI) -> None:
    captured = entries("progress.json")
    idle = captured[0]
    check_like_capture(sdnext, idle)
    running = next(e for e in captured if e["response"]["body"].get("current_image"))
    sdnext.pause_at_step(2)
    box: dict[str, Any] = {}
    thread = _job(sdnext, captured[1]["request"]["body"], box)
    assert sdnext.wait_paused()
    mid = check_like_capture(sdnext, running).json()
    assert mid["id"] and mid["state"]["job"] == "Inference"
    assert (mid["progress"], mid["state"]["sampling_step"]) == (0.33, 2)  # 2/6, no 0.01 start
    assert decoded(mid["current_image"])["format"] == "JPEG"  # a preview at every step
    sdnext.resume()
    thread.join(30)
    assert box["answer"].status_code == 200
    after = check_like_capture(sdnext, captured[-1]).json()
    assert after == {**captured[-1]["response"]["body"], "state": after["state"]}
    assert after["state"]["job_count"] == 0 and after["state"]["job_no"] == 0


def test_interrupt(sdnext: FakeWebUI) -> None:
    captured = entries("interrupt.json")
    job = captured[0]
    stop = next(e for e in captured if e["request"]["path"] == V1 + "interrupt")
    sdnext.pause_at_step(2)
    box: dict[str, Any] = {}
    thread = _job(sdnext, job["request"]["body"], box)
    assert sdnext.wait_paused()
    check_like_capture(sdnext, stop)  # 204, empty body
    thread.join(30)
    answer = box["answer"]
    assert answer.status_code == 200
    (image,) = answer.json()["images"]
    seen = decoded(image)
    assert (seen["width"], seen["height"]) == (512, 512)  # not the 64x64 asked for
    assert "Steps: 6, Size: 64x64" in seen["exif_usercomment"]
    after = requests.get(sdnext.url + V1 + "progress", timeout=10).json()
    assert after["state"]["interrupted"] is True
