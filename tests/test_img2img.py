"""`sdcli img2img`: img2img and inpainting as a mode of the run core, end to end over the fake."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_contract import COMPONENTS, check_value
from typer.testing import CliRunner, Result

from sdcli.cli.app import app
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli

runner = CliRunner()
IMG2IMG = "/sdapi/v1/img2img"
FAST = ["--steps", "2", "--sampler", "Euler"]


def sdcli(fake: FakeWebUI, *args: str) -> Result:
    return runner.invoke(app, ["--url", fake.url, *args])


def image(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    Image.new(mode, size, 0 if mode == "L" else (90, 60, 30)).save(path, "PNG")
    return path


def check_img2img_body(body: dict[str, Any]) -> None:
    properties = COMPONENTS["StableDiffusionProcessingImg2Img"]["properties"]
    for key, value in body.items():
        assert key in properties, f"{key!r} is not an img2img field: the server would drop it"
        check_value(value, properties[key], key)


def parameters(path: str | Path) -> str:
    with Image.open(path) as saved:
        return str(saved.info["parameters"])


def size_of(path: str | Path) -> tuple[int, int]:
    with Image.open(path) as saved:
        width, height = saved.size
        return int(width), int(height)


def sent(fake: FakeWebUI) -> list[dict[str, Any]]:
    return [r.json for r in fake.requests_to(IMG2IMG)]


def test_one_init_image_sends_it_unchanged_at_its_own_size(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    init = image(tmp_path / "photo.png", (100, 60))
    out = tmp_path / "out"
    result = sdcli(fake_webui, "img2img", "--init", str(init), "--denoise", "0.4", *FAST,
                   "-o", str(out), "a cat")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (body,) = sent(fake_webui)
    check_img2img_body(body)
    assert body["init_images"] == [base64.b64encode(init.read_bytes()).decode()]
    assert (body["width"], body["height"], body["denoising_strength"]) == (104, 64, 0.4)
    assert "photo.png: size 104x64 from the init image (rounded to a multiple of 8)" in (
        result.stderr
    )
    (path,) = result.stdout.splitlines()
    assert "-photo-" in Path(path).name  # the default name says which input it came from
    assert size_of(path) == (104, 64)
    assert "Denoising strength: 0.4" in parameters(path)


def test_a_directory_runs_each_image_in_turn_named_by_init(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    image(folder / "b.png", (64, 64))
    image(folder / "a.png", (64, 64))
    out = tmp_path / "out"
    result = run_sdcli("--url", fake_webui.url, "img2img", "-i", str(folder), *FAST,
                       "--seed", "5", "--name", "{init}-{seed}", "-o", str(out), "--json",
                       "a cat")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["a-5.png", "b-5.png"]
    bodies = sent(fake_webui)
    assert [b["init_images"][0] for b in bodies] == [
        base64.b64encode((folder / n).read_bytes()).decode() for n in ("a.png", "b.png")
    ]


def test_inpainting_flags_become_the_apis_fields(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    init = image(tmp_path / "room.png", (64, 64))
    mask = image(tmp_path / "window.png", (64, 64), "L")
    args = [
        "img2img", "-i", str(init), "--mask", str(mask), "--mask-blur", "8",
        "--inpaint-fill", "original", "--inpaint-area", "masked", "--mask-padding", "16",
        "--invert-mask", "--resize-mode", "crop", *FAST, "-o", str(tmp_path / "out"), "curtain",
    ]  # fmt: skip
    result = sdcli(fake_webui, *args)
    assert result.exit_code == 0, result.stderr
    (body,) = sent(fake_webui)
    check_img2img_body(body)
    assert body["mask"] == base64.b64encode(mask.read_bytes()).decode()
    wanted = {
        "mask_blur": 8,
        "inpainting_fill": 1,
        "inpaint_full_res": True,
        "inpaint_full_res_padding": 16,
        "inpainting_mask_invert": 1,
        "resize_mode": 1,
    }
    assert {k: body[k] for k in wanted} == wanted
    infotext = parameters(result.stdout.strip())
    assert "Mask mode: Inpaint not masked, Mask blur: 8, Inpaint area: Only masked" in infotext


def test_a_mask_repaints_the_whole_picture_unless_asked(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """The API's default is "only masked" (inpaint_full_res true), unlike the web UI's form."""
    init = image(tmp_path / "room.png", (64, 64))
    mask = image(tmp_path / "m.png", (64, 64), "L")
    result = sdcli(fake_webui, "img2img", "-i", str(init), "--mask", str(mask), *FAST,
                   "-o", str(tmp_path), "x")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sent(fake_webui)[0]["inpaint_full_res"] is False


def test_presets_hold_img2img_keys_and_generate_leaves_them_out(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    preset = tmp_path / "soft.toml"
    preset.write_text('denoising_strength = 0.3\nresize_mode = "fill"\nsteps = 2\n')
    init = image(tmp_path / "p.png", (64, 64))
    result = sdcli(fake_webui, "img2img", "-i", str(init), "-p", str(preset), "-o",
                   str(tmp_path / "a"), "x")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = sent(fake_webui)[0]
    assert (body["denoising_strength"], body["resize_mode"]) == (0.3, 2)
    result = sdcli(fake_webui, "generate", "-p", str(preset), "-o", str(tmp_path / "b"), "x")
    assert result.exit_code == 0, result.stderr
    (txt2img,) = [r.json for r in fake_webui.requests_to("/sdapi/v1/txt2img")]
    assert "resize_mode" not in txt2img


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("not-image", "is not an image"),
        ("empty-dir", "holds no images"),
        ("small-mask", "the mask"),
        ("no-init", "img2img needs --init IMAGE"),
        ("bad-fill", "--inpaint-fill must be one of fill, original, noise, nothing"),
        ("bad-denoise", "--denoise must be between 0 and 1"),
    ],
)
def test_bad_img2img_input_is_one_line_and_exit_2(
    fake_webui: FakeWebUI, tmp_path: Path, make: str, message: str
) -> None:
    init = image(tmp_path / "i.png", (64, 64))
    args = ["-i", str(init)]
    if make == "not-image":
        bad = tmp_path / "x.png"
        bad.write_text("no")
        args = ["-i", str(bad)]
    elif make == "empty-dir":
        (tmp_path / "empty").mkdir()
        args = ["-i", str(tmp_path / "empty")]
    elif make == "small-mask":
        args += ["--mask", str(image(tmp_path / "m.png", (32, 64), "L"))]
    elif make == "no-init":
        args = []
    elif make == "bad-fill":
        args += ["--inpaint-fill", "blur"]
    elif make == "bad-denoise":
        args += ["--denoise", "1.5"]
    result = run_sdcli("--url", fake_webui.url, "img2img", *args, *FAST,
                       "-o", str(tmp_path / "out"), "a cat")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("sdcli: error: ")
    assert message in result.stderr.splitlines()[0]
    assert sent(fake_webui) == []
    assert not (tmp_path / "out").exists()


def test_generate_has_no_img2img_flags() -> None:
    result = run_sdcli("generate", "--mask-blur", "4", "a cat")
    assert result.returncode == 2
    assert "no such option: --mask-blur" in result.stderr


def test_tiling_restore_faces_and_variation_flags(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = sdcli(fake_webui, "generate", "--tiling", "--restore-faces", "--variation-seed", "9",
                   "--variation-strength", "0.5", *FAST, "-o", str(tmp_path), "x")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (body,) = [r.json for r in fake_webui.requests_to("/sdapi/v1/txt2img")]
    assert (body["tiling"], body["restore_faces"], body["subseed"], body["subseed_strength"]) == (
        True,
        True,
        9,
        0.5,
    )
    infotext = parameters(result.stdout.strip())
    assert "Variation seed: 9, Variation seed strength: 0.5" in infotext
    assert "Tiling: True" in infotext


def test_on_a_terminal_the_note_the_path_and_the_summary_stand_alone(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    from terminal_helpers import leftover_bar, run_on_terminal

    image(tmp_path / "photo.png", (100, 60))
    screen = run_on_terminal(
        "--url", fake_webui.url, "img2img", "-i", "photo.png", *FAST, "-o", "out", "a cat",
        cwd=tmp_path, columns=100,
    )  # fmt: skip
    assert screen.exit_code == 0, screen.text
    (saved,) = [p.name for p in (tmp_path / "out").iterdir()]
    assert f"out/{saved}" in screen.lines
    assert any("photo.png: size 104x64 from the init image" in line for line in screen.lines)
    assert any(line.startswith("'a cat': saved 1 image") for line in screen.lines)
    assert leftover_bar(screen.lines) == []


def test_dry_run_shows_the_init_image_and_mask_by_name_and_size(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """What would be sent, each image as what it stands for: not megabytes of base64."""
    first = image(tmp_path / "photo.png", (100, 60))
    second = image(tmp_path / "room.png", (100, 60))
    mask = image(tmp_path / "mask.png", (100, 60), "L")
    result = sdcli(fake_webui, "img2img", "-i", str(first), "-i", str(second), "--mask",
                   str(mask), *FAST, "-c", "2", "--dry-run", "a cat")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bodies = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(bodies) == 2  # one per init image (not per batch)
    for body, init in zip(bodies, (first, second), strict=True):
        assert body["init_images"] == [f"<base64 of {init}, {init.stat().st_size} bytes>"]
        assert body["mask"] == f"<base64 of {mask}, {mask.stat().st_size} bytes>"
        assert (body["width"], body["height"]) == (104, 64)  # the size that would be sent
        assert body["inpaint_full_res"] is False
    assert fake_webui.requests_to(IMG2IMG) == []
