"""`generate --upscale NAME:2` (and img2img's): every saved image goes through the extras tab and
is replaced by the answer, before its path is printed; the upscaler is checked before anything
is generated."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_cli_extras import check_body, write_png

from sdcli.pngmeta import png_size, read_text_chunks
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import error_line, invoke
from terminal_helpers import leftover_bar, run_on_terminal

V1 = "/sdapi/v1"
TINY = ("--steps", "2", "-W", "64", "-H", "64", "--seed", "7")
STEP = "Postprocess upscale by: 2.0, Postprocess upscaler: R-ESRGAN 4x+"


def generate(fake: FakeWebUI, out: Path, *args: str, command: str = "generate") -> Any:
    return invoke(["--url", fake.url, command, *TINY, "-o", str(out), *args])


def test_each_image_is_upscaled_in_its_place(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = generate(fake_webui, out, "-b", "2", "--upscale", "r-esrgan 4x+:2", "a cat")
    assert r.exit_code == 0, r.stderr
    paths = [Path(line) for line in r.stdout.splitlines()]
    assert len(paths) == 2 and sorted(out.iterdir()) == sorted(paths)  # no second file each
    extras = fake_webui.requests_to(f"{V1}/extra-single-image")
    assert len(extras) == 2
    for request, seed in zip(extras, (7, 8), strict=True):
        check_body(request.json, "ExtrasSingleImageRequest")
        assert request.json["upscaler_1"] == "R-ESRGAN 4x+"  # the server's spelling
        assert request.json["upscaling_resize"] == 2.0
        sent = base64.b64decode(request.json["image"])  # the image as the server made it
        assert (
            png_size(sent) == (64, 64) and f"Seed: {seed}," in read_text_chunks(sent)["parameters"]
        )
    for path, seed in zip(paths, (7, 8), strict=True):
        data = path.read_bytes()
        assert png_size(data) == (128, 128)
        chunks = read_text_chunks(data)
        assert chunks["postprocessing"] == STEP
        params = chunks["parameters"]
        assert params.startswith("a cat\n") and f"Seed: {seed}," in params
        assert params.endswith(f", Version: v1.10.1, {STEP}")  # as the web UI writes it


def test_json_lines_carry_the_upscale_step(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "--upscale", "Lanczos", "--json", "a cat")
    assert r.exit_code == 0, r.stderr
    (line,) = r.stdout.splitlines()
    item = json.loads(line)
    assert item["parameters"]["Postprocess upscaler"] == "Lanczos"
    assert item["parameters"]["Postprocess upscale by"] == 2.0  # NAME alone: twice the size
    assert item["infotext"] == read_text_chunks(Path(item["path"]).read_bytes())["parameters"]


def test_an_exact_size_crops_to_fit(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "--upscale", "lanczos:96x80", "a cat")
    assert r.exit_code == 0, r.stderr
    (request,) = fake_webui.requests_to(f"{V1}/extra-single-image")
    assert request.json["upscaling_resize_w"] == 96 and request.json["upscaling_resize_h"] == 80
    assert png_size(Path(r.stdout.strip()).read_bytes()) == (96, 80)


def test_an_unknown_upscaler_stops_before_anything_is_generated(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(fake_webui, tmp_path, "--upscale", "r-esrgan 4x:2", "a cat")
    assert r.exit_code == 2
    line = error_line(r.stderr)
    assert "the server has no upscaler 'r-esrgan 4x'" in line and "R-ESRGAN 4x+" in line
    assert fake_webui.requests_to(f"{V1}/txt2img") == []
    assert fake_webui.requests_to(f"{V1}/extra-single-image") == []
    assert list(tmp_path.iterdir()) == []


def test_a_latent_mode_is_no_extras_upscaler(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "--upscale", "Latent", "a cat")
    assert r.exit_code == 2
    assert "the server has no upscaler 'Latent'" in error_line(r.stderr)
    assert fake_webui.requests_to(f"{V1}/txt2img") == []


def test_a_malformed_upscale_is_refused_before_any_request(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    for bad in ("lanczos:abc", "lanczos:0", ":2", "lanczos:9"):
        r = generate(fake_webui, tmp_path, "--upscale", bad, "a cat")
        assert r.exit_code == 2, bad
        assert f"--upscale {bad!r}" in error_line(r.stderr)
    assert fake_webui.requests == []


def test_a_failed_upscale_keeps_the_generated_image(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.fail(f"{V1}/extra-single-image", 500)
    r = generate(fake_webui, tmp_path, "--upscale", "Lanczos:2", "a cat")
    assert r.exit_code == 1
    (saved,) = tmp_path.iterdir()
    assert r.stdout == f"{saved}\n"  # the image is there, as generated, and said so
    line = error_line(r.stderr)
    assert line.startswith(f"sdcli: error: upscaling {saved}: ") and "kept as generated" in line
    (request,) = fake_webui.requests_to(f"{V1}/extra-single-image")
    assert saved.read_bytes() == base64.b64decode(request.json["image"])
    assert png_size(saved.read_bytes()) == (64, 64)


def test_retries_cover_the_upscale(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.fail(f"{V1}/extra-single-image", 503)
    r = generate(fake_webui, tmp_path, "--upscale", "Lanczos:2", "--retries", "1", "a cat")
    assert r.exit_code == 0, r.stderr
    assert len(fake_webui.requests_to(f"{V1}/extra-single-image")) == 2
    assert png_size(Path(r.stdout.strip()).read_bytes()) == (128, 128)


def test_img2img_upscales_too(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    init = write_png(tmp_path / "photo.png")
    out = tmp_path / "out"
    r = generate(
        fake_webui, out, "--init", str(init), "--upscale", "Nearest:1.5", "a cat", command="img2img"
    )
    assert r.exit_code == 0, r.stderr
    (path,) = (Path(line) for line in r.stdout.splitlines())
    assert "photo" in path.name
    assert png_size(path.read_bytes()) == (96, 96)  # 64 x 1.5, as the web UI floors it to 8
    assert len(fake_webui.requests_to(f"{V1}/extra-single-image")) == 1


def test_a_preset_can_hold_the_upscale(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    preset = tmp_path / "big.toml"
    preset.write_text('upscale = "R-ESRGAN 4x+:2"\n', encoding="utf-8")
    out = tmp_path / "out"
    r = generate(fake_webui, out, "-p", str(preset), "a cat")
    assert r.exit_code == 0, r.stderr
    (request,) = fake_webui.requests_to(f"{V1}/extra-single-image")
    assert request.json["upscaler_1"] == "R-ESRGAN 4x+"
    (txt2img,) = fake_webui.requests_to(f"{V1}/txt2img")
    assert "upscale" not in txt2img.json  # not a txt2img field: never sent there


def test_dry_run_says_what_the_extras_tab_gets(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "--upscale", "lanczos:2", "--dry-run", "a cat")
    assert r.exit_code == 0, r.stderr
    assert '"upscaler_1": "Lanczos", "resize_mode": 0, "upscaling_resize": 2.0' in r.stderr
    assert "upscale" not in json.loads(r.stdout)
    assert fake_webui.requests_to(f"{V1}/extra-single-image") == []


def test_over_several_servers_a_failed_upscale_is_not_generated_again(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path
) -> None:
    """The images are saved: another server must not make the unit again for a 500 here."""
    first, second = make_fake_webui(), make_fake_webui()
    for fake in (first, second):
        fake.fail(f"{V1}/extra-single-image", 500, times=None)
    r = invoke(["--url", first.url, "--url", second.url, "generate", *TINY, "-o", str(tmp_path),
                "--upscale", "Lanczos", "a cat"])  # fmt: skip
    assert r.exit_code == 1
    assert "kept as generated" in error_line(r.stderr)
    made = [*first.requests_to(f"{V1}/txt2img"), *second.requests_to(f"{V1}/txt2img")]
    assert len(made) == 1 and len(list(tmp_path.iterdir())) == 1


def test_on_a_terminal_each_path_shows_once_upscaled(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    """What a person sees: the bar gone, each path alone on its row, then the summary."""
    screen = run_on_terminal(
        "--url", fake_webui.url, "generate", *TINY, "-b", "2", "--no-show", "--upscale",
        "Lanczos:2", "-o", "out", "a cat", cwd=tmp_path,
    )  # fmt: skip
    assert screen.exit_code == 0, screen.text
    assert leftover_bar(screen.lines) == [], screen.text
    out = tmp_path / "out"
    names = sorted(f"out/{p.name}" for p in out.iterdir())
    assert len(names) == 2 and all(
        png_size((tmp_path / n).read_bytes()) == (128, 128) for n in names
    )
    shown = [line for line in screen.lines if line.startswith("out/")]
    assert sorted(shown) == names
    index = screen.lines.index(shown[-1])
    assert "saved 2 images" in screen.lines[index + 1]
    assert "warning" not in screen.text and "error" not in screen.text
