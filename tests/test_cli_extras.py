"""`sdcli upscale` and `sdcli describe` end to end over the fake (extras and interrogate)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin
from test_contract import COMPONENTS, check_value
from typer.testing import CliRunner, Result

from sdcli.cli.app import app
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli

runner = CliRunner()
V1 = "/sdapi/v1"
PARAMS = "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7.0, Seed: 7, Size: 64x64, Model: m"


def sdcli(fake: FakeWebUI, *args: str) -> Result:
    return runner.invoke(app, ["--url", fake.url, *args])


def write_png(path: Path, size: tuple[int, int] = (64, 64), params: str | None = PARAMS) -> Path:
    info = PngImagePlugin.PngInfo()
    if params is not None:
        info.add_text("parameters", params)
    Image.new("RGB", size, (10, 120, 200)).save(path, "PNG", pnginfo=info)
    return path


def opened(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


def check_body(body: dict[str, Any], model: str) -> None:
    """Every field is one the server's request model has, of the right type (test_contract)."""
    properties = COMPONENTS[model]["properties"]
    for key, value in body.items():
        assert key in properties, f"{key!r} is not a {model} field: the server would drop it"
        check_value(value, properties[key], key)


# --- upscale ---------------------------------------------------------------------------------


def test_one_image_goes_to_extra_single_image(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    source = write_png(tmp_path / "cat.png")
    out = tmp_path / "out"
    result = sdcli(fake_webui, "upscale", str(source), "--upscaler", "r-esrgan 4x+", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    saved = out / "cat-x2.png"
    assert result.stdout == f"{saved}\n"
    (request,) = fake_webui.requests_to(f"{V1}/extra-single-image")
    check_body(request.json, "ExtrasSingleImageRequest")
    assert request.json["upscaler_1"] == "R-ESRGAN 4x+"  # the server's spelling
    assert request.json["upscaling_resize"] == 2.0
    assert request.json["image"] == base64.b64encode(source.read_bytes()).decode()
    image = opened(saved)
    assert image.size == (128, 128)
    assert image.info["parameters"] == PARAMS  # the original's, kept
    assert image.info["postprocessing"] == (
        "Postprocess upscale by: 2.0, Postprocess upscaler: R-ESRGAN 4x+"
    )
    assert "r-esrgan 4x+ -> R-ESRGAN 4x+" in result.stderr


def test_several_images_go_in_batches_and_keep_their_order(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(9):
        write_png(folder / f"img{i}.png", size=(64 + 8 * (i % 2), 64))
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    out = tmp_path / "out"
    result = run_sdcli(
        "--url", fake_webui.url, "upscale", str(folder), "-u", "Lanczos", "--scale", "1.5",
        "-o", str(out), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["input"]).name for r in rows] == [f"img{i}.png" for i in range(9)]
    assert [Path(r["path"]).name for r in rows] == [f"img{i}-x1.5.png" for i in range(9)]
    assert [(r["width"], r["height"]) for r in rows[:2]] == [(96, 96), (104, 96)]
    requests = fake_webui.requests_to(f"{V1}/extra-batch-images")
    assert [len(r.json["imageList"]) for r in requests] == [8, 1]
    for request in requests:
        check_body(request.json, "ExtrasBatchImagesRequest")
    assert requests[0].json["imageList"][1]["name"] == "img1.png"
    assert rows[0]["parameters"] == PARAMS
    assert fake_webui.requests_to(f"{V1}/extra-single-image") == []


def test_exact_size_second_upscaler_and_face_restoration(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    source = write_png(tmp_path / "face.png")
    args = [
        "upscale", str(source), "-u", "nearest", "--to", "100x80", "--upscaler-2", "lanczos",
        "--blend", "0.5", "--restore-faces", "codeformer", "--restore-strength", "0.8",
        "-o", str(tmp_path),
    ]  # fmt: skip
    result = sdcli(fake_webui, *args)
    assert result.exit_code == 0, result.stderr
    (request,) = fake_webui.requests_to(f"{V1}/extra-single-image")
    body = {k: v for k, v in request.json.items() if k != "image"}
    assert body == {
        "upscaler_1": "Nearest",
        "resize_mode": 1,
        "upscaling_resize_w": 100,
        "upscaling_resize_h": 80,
        "upscaling_crop": True,
        "upscaler_2": "Lanczos",
        "extras_upscaler_2_visibility": 0.5,
        "codeformer_visibility": 0.8,
        "codeformer_weight": 0.5,
    }
    image = opened(tmp_path / "face-100x80.png")
    assert image.size == (100, 80)
    assert image.info["postprocessing"].endswith(
        "Postprocess upscaler 2: Lanczos, CodeFormer visibility: 0.8, CodeFormer weight: 0.5"
    )


def test_an_existing_file_is_never_overwritten(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    source = write_png(tmp_path / "cat.png")
    (tmp_path / "cat-x2.png").write_bytes(b"mine")
    result = sdcli(fake_webui, "upscale", str(source), "-u", "Lanczos", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "cat-x2.png").read_bytes() == b"mine"
    assert result.stdout == f"{tmp_path / 'cat-x2-1.png'}\n"


def test_a_jpeg_inputs_parameters_are_carried_into_the_png(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """The server keeps PNG text chunks only: a JPEG's infotext (EXIF) would be lost."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + PARAMS.encode("utf-16-be")
    source = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(source, "JPEG", exif=exif.tobytes())
    result = sdcli(fake_webui, "upscale", str(source), "-u", "Lanczos", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    image = opened(tmp_path / "photo-x2.png")
    assert image.info["parameters"] == PARAMS
    assert image.info["postprocessing"].startswith("Postprocess upscale by: 2.0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-u", "esrgan5"], "the server has no upscaler 'esrgan5' (did you mean 'ESRGAN_4x'"),
        (["-u", "Lanczos", "--upscaler-2", "bogus"], "the server has no upscaler 'bogus'"),
        (["-u", "Lanczos", "--scale", "0"], "--scale must be a number above 0"),
        (["-u", "Lanczos", "--scale", "2", "--to", "10x10"], "give --scale or --to, not both"),
        (["-u", "Lanczos", "--to", "wide"], "--to must look like WIDTHxHEIGHT"),
        (["-u", "Lanczos", "--blend", "2", "--upscaler-2", "Nearest"], "--blend must be"),
        ([], "nothing to do: give --upscaler NAME"),
        (["-u", "None", "--restore-faces", "faceswap"], "no face restorer 'faceswap'"),
    ],
)
def test_bad_upscale_input_is_one_line_and_exit_2(
    fake_webui: FakeWebUI, tmp_path: Path, args: list[str], message: str
) -> None:
    source = write_png(tmp_path / "cat.png")
    result = run_sdcli("--url", fake_webui.url, "upscale", str(source), *args, "-o", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("sdcli: error: ")
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert fake_webui.requests_to(f"{V1}/extra-single-image") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.png"]


def test_a_file_that_is_no_image_or_an_empty_folder_stops_before_sending(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    good = write_png(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, message in (
        (bad, f"{bad} is not an image"),
        (empty, f"{empty} holds no images"),
        (tmp_path / "gone.png", "no such file"),
    ):
        for command in (["upscale", "-u", "Lanczos", "-o", str(tmp_path)], ["describe"]):
            result = run_sdcli("--url", fake_webui.url, *command, str(good), str(target))
            assert result.returncode == 2, result.stderr
            assert result.stderr.count("\n") == 1 and message in result.stderr
    assert fake_webui.requests_to(f"{V1}/extra-batch-images") == []
    assert fake_webui.requests_to(f"{V1}/interrogate") == []


def test_upscale_unknown_to_the_server_but_listed_is_its_500(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """A server failure is exit 1 with its message; nothing half-written is left."""
    source = write_png(tmp_path / "cat.png")
    fake_webui.fail(
        f"{V1}/extra-single-image",
        500,
        {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory"},
    )
    result = run_sdcli("--url", fake_webui.url, "upscale", str(source), "-u", "Lanczos",
                       "-o", str(tmp_path))  # fmt: skip
    assert result.returncode == 1
    assert "the server failed (500)" in result.stderr and "CUDA out of memory" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.png"]


# --- describe --------------------------------------------------------------------------------


def test_describe_prints_one_caption_per_image(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    a, b = write_png(tmp_path / "a.png"), write_png(tmp_path / "b.png", params=None)
    result = run_sdcli("--url", fake_webui.url, "describe", str(a), str(b))
    assert result.returncode == 0, result.stderr
    caption = "a painting of a cat sitting on a table, by Greg Rutkowski, digital art"
    assert result.stdout == f"{caption}\n{caption}\n"
    requests = fake_webui.requests_to(f"{V1}/interrogate")
    assert [r.json["model"] for r in requests] == ["clip", "clip"]
    for request in requests:
        check_body(request.json, "InterrogateRequest")
    tags = sdcli(fake_webui, "describe", "--model", "DeepDanbooru", str(tmp_path), "--json")
    assert [json.loads(line) for line in tags.stdout.splitlines()] == [
        {"path": str(a), "model": "deepdanbooru", "caption": "1girl, solo, cat, sitting, table"},
        {"path": str(b), "model": "deepdanbooru", "caption": "1girl, solo, cat, sitting, table"},
    ]


def test_describe_without_the_weights_is_one_clear_error(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.remove_interrogator_weights()
    image = write_png(tmp_path / "a.png")
    clip = run_sdcli("--url", fake_webui.url, "describe", str(image))
    assert clip.returncode == 1 and clip.stdout == ""
    assert clip.stderr.count("\n") == 1
    assert "answered '<error>'" in clip.stderr and "weights" in clip.stderr
    first = run_sdcli("--url", fake_webui.url, "describe", "-m", "deepdanbooru", str(image))
    assert first.returncode == 1 and first.stderr.count("\n") == 1
    assert "IndexError" in first.stderr and "DeepDanbooru weights" in first.stderr
    again = run_sdcli("--url", fake_webui.url, "describe", "-m", "deepdanbooru", str(image))
    assert again.returncode == 0
    assert again.stdout == "\n"  # one line per image, even an empty caption
    assert "nothing to say" in again.stderr


def test_describe_refuses_an_unknown_model_before_sending(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    image = write_png(tmp_path / "a.png")
    result = run_sdcli("--url", fake_webui.url, "describe", "-m", "blip2", str(image))
    assert result.returncode == 2
    assert result.stderr == "sdcli: error: --model must be clip or deepdanbooru, got 'blip2'\n"
    assert fake_webui.requests_to(f"{V1}/interrogate") == []


def test_describe_sends_the_file_unchanged(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (32, 48)).save(out, "WEBP")
    path = tmp_path / "x.webp"
    path.write_bytes(out.getvalue())
    assert sdcli(fake_webui, "describe", str(path)).exit_code == 0
    (request,) = fake_webui.requests_to(f"{V1}/interrogate")
    assert request.json["image"] == base64.b64encode(out.getvalue()).decode()
