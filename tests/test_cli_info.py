"""`sdcli info`: the server, and parameters read locally from images; `generate --from-image`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sdcli.cli.app import app
from sdcli.pngmeta import PNG_SIGNATURE, iter_chunks
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli

SAMPLE_PNG = Path(__file__).parent / "fixtures" / "sample.png"
SAMPLE_TEXT = (
    "a cat\nSteps: 2, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.0, "
    "Seed: 634212383, Size: 64x64, Model hash: 6d338e2388, Model: random-sd15, Clip skip: 2, "
    "Version: v1.10.1"
)
runner = CliRunner()


def png_without_text(tmp_path: Path) -> Path:
    """sample.png with its text chunks cut out: a valid PNG that records no parameters."""
    data = SAMPLE_PNG.read_bytes()
    out = bytearray(PNG_SIGNATURE)
    for ctype, start, end in iter_chunks(data):
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            out += data[start - 8 : end + 4]
    path = tmp_path / "bare.png"
    path.write_bytes(bytes(out))
    return path


def jpeg_with_parameters(tmp_path: Path, text: str) -> Path:
    """A JPEG carrying infotext in EXIF UserComment, as the web UI saves JPEGs."""
    from PIL import Image

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif)
    path = tmp_path / "photo.jpg"
    path.write_bytes(buf.getvalue())
    return path


# --- info IMAGE --------------------------------------------------------------------------------


def test_info_image_prints_prompt_then_every_key() -> None:
    result = runner.invoke(app, ["info", str(SAMPLE_PNG)])
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines[0] == ["Prompt", "a cat"]
    assert lines[1] == ["Negative prompt", ""]
    assert lines[2:] == [
        ["Steps", "2"],
        ["Sampler", "Euler a"],
        ["Schedule type", "Automatic"],
        ["CFG scale", "7.0"],
        ["Seed", "634212383"],
        ["Size", "64x64"],
        ["Model hash", "6d338e2388"],
        ["Model", "random-sd15"],
        ["Clip skip", "2"],
        ["Version", "v1.10.1"],
    ]
    assert result.stderr == ""


def test_info_image_json_is_one_object_per_file(tmp_path: Path) -> None:
    jpeg = jpeg_with_parameters(
        tmp_path, "a dog\nNegative prompt: ugly\nSteps: 3, Seed: 5, Size: 8x8"
    )
    result = runner.invoke(app, ["info", "--json", str(SAMPLE_PNG), str(jpeg)])
    assert result.exit_code == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["path"] == str(SAMPLE_PNG)
    assert first["prompt"] == "a cat"
    assert first["negative_prompt"] == ""
    assert first["infotext"] == SAMPLE_TEXT
    assert first["parameters"]["Seed"] == 634212383
    assert first["parameters"]["Size-1"] == 64
    assert (first["seed"], first["width"], first["height"]) == (634212383, 64, 64)
    assert second["path"] == str(jpeg)
    assert second["negative_prompt"] == "ugly"
    assert second["parameters"] == {
        "Steps": 3,
        "Seed": 5,
        "Size-1": 8,
        "Size-2": 8,
        "Prompt": "a dog",
        "Negative prompt": "ugly",
    }


def test_info_image_raw_prints_the_stored_text() -> None:
    result = runner.invoke(app, ["info", "--raw", str(SAMPLE_PNG)])
    assert result.exit_code == 0
    assert result.stdout == SAMPLE_TEXT + "\n"


def test_info_several_images_prefix_each_line_with_the_path(tmp_path: Path) -> None:
    jpeg = jpeg_with_parameters(tmp_path, "line one\nline\ttwo\nSteps: 3, Seed: 5, Size: 8x8")
    result = runner.invoke(app, ["info", str(SAMPLE_PNG), str(jpeg)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{SAMPLE_PNG}\tPrompt\ta cat"
    assert f"{jpeg}\tPrompt\tline one\\nline\\ttwo" in lines
    assert f"{jpeg}\tSeed\t5" in lines


def test_info_bad_files_are_reported_and_the_rest_still_shown(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    bare = png_without_text(tmp_path)
    missing = tmp_path / "missing.png"
    result = runner.invoke(
        app, ["info", "--json", str(notes), str(SAMPLE_PNG), str(bare), str(missing)]
    )
    assert result.exit_code == 2
    [shown] = [json.loads(line) for line in result.stdout.splitlines()]
    assert shown["path"] == str(SAMPLE_PNG)
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    assert errors[0] == f"sdcli: error: {notes} is not a PNG, JPEG, WebP or GIF image"
    assert errors[1] == f"sdcli: error: {bare}: no generation parameters in this image"
    assert errors[2].startswith(f"sdcli: error: cannot read {missing}")


def test_info_json_and_raw_together_is_a_usage_error() -> None:
    result = runner.invoke(app, ["info", "--json", "--raw", str(SAMPLE_PNG)])
    assert result.exit_code == 2
    assert "--json and --raw" in result.stderr


def test_info_image_needs_no_server() -> None:
    """The URL points nowhere: reading an image must not even try to connect."""
    result = runner.invoke(app, ["--url", "http://127.0.0.1:9", "info", str(SAMPLE_PNG)])
    assert result.exit_code == 0


def test_subprocess_info_image_imports_neither_requests_nor_pillow() -> None:
    done = run_sdcli("info", str(SAMPLE_PNG), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "Prompt\ta cat"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "sdcli.pngmeta" in imported  # the import log is really there
    assert not {"requests", "urllib3", "PIL", "PIL.Image"} & imported


def test_subprocess_info_bad_file_stderr_is_plain(tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("hello")
    done = run_sdcli("info", str(notes), str(SAMPLE_PNG))
    assert done.returncode == 2
    assert done.stdout.splitlines()[0] == f"{SAMPLE_PNG}\tPrompt\ta cat"
    assert done.stderr == f"sdcli: error: {notes} is not a PNG, JPEG, WebP or GIF image\n"


# --- generate --from-image ---------------------------------------------------------------------

OFFLINE = "http://127.0.0.1:9"  # nothing listens: --dry-run shows the names as typed


def dry_run(*args: str) -> dict[str, object]:
    result = runner.invoke(
        app, ["--url", OFFLINE, "generate", "--dry-run", "--from-image", str(SAMPLE_PNG), *args]
    )
    assert result.exit_code == 0, result.stderr
    body: dict[str, object] = json.loads(result.stdout)
    return body


def test_from_image_alone_reruns_the_image() -> None:
    assert dry_run() == {
        "prompt": "a cat",
        "negative_prompt": "",
        "steps": 2,
        "cfg_scale": 7.0,
        "width": 64,
        "height": 64,
        "seed": 634212383,
        "sampler_name": "Euler a",
        "override_settings": {
            "CLIP_stop_at_last_layers": 2,
            "sd_model_checkpoint": "random-sd15",
        },
        "override_settings_restore_afterwards": True,
    }


def test_from_image_is_the_lowest_layer() -> None:
    body = dry_run("-p", "draft", "--cfg", "4", "--set", "width=128", "a", "dog")
    assert body["prompt"] == "a dog"  # prompt words replace the image's prompt
    assert body["steps"] == 12  # the preset beats the image
    assert body["cfg_scale"] == 4  # a flag beats the preset and the image
    assert body["width"] == 128  # --set beats everything
    assert body["height"] == 512  # the preset's
    assert body["seed"] == 634212383  # only the image sets it


def test_from_image_without_parameters_is_a_usage_error(tmp_path: Path) -> None:
    bare = png_without_text(tmp_path)
    result = runner.invoke(app, ["generate", "--dry-run", "--from-image", str(bare)])
    assert result.exit_code == 2
    assert result.stderr == f"sdcli: error: {bare}: no generation parameters in this image\n"


# --- info (the server) -------------------------------------------------------------------------

MakeFake = Callable[..., FakeWebUI]


def server_info(fake: FakeWebUI | str, *args: str) -> tuple[Result, dict[str, str]]:
    url = fake if isinstance(fake, str) else fake.url
    result = runner.invoke(app, ["--url", url, "info", *args])
    table = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    return result, table


def test_info_server_a1111(fake_webui: FakeWebUI) -> None:
    fake_webui.options["CLIP_stop_at_last_layers"] = 2.0  # stored as a float by the web UI
    result, table = server_info(fake_webui)
    assert result.exit_code == 0, result.stderr
    assert list(table) == [
        "url",
        "reachable",
        "flavour",
        "version",
        "model",
        "clip skip",
        "checkpoints",
        "samplers",
        "schedulers",
        "job running",
    ]
    assert table["url"] == f"{fake_webui.url} (from flag)"
    assert table["reachable"] == "yes"
    assert table["flavour"] == "AUTOMATIC1111 (UI mode)"
    assert table["version"] == "v1.10.1 (from /internal/sysinfo)"
    assert table["model"] == "random-sd15.safetensors [6d338e2388]"
    assert table["clip skip"] == "2"
    models = runner.invoke(app, ["--url", fake_webui.url, "models"]).stdout.splitlines()
    assert table["checkpoints"] == str(len(models))
    samplers = runner.invoke(app, ["--url", fake_webui.url, "samplers"]).stdout.splitlines()
    assert table["samplers"] == str(sum(1 for line in samplers if line.startswith("sampler\t")))
    assert table["schedulers"] == str(sum(1 for line in samplers if line.startswith("scheduler")))
    assert table["job running"] == "no"
    assert result.stderr == ""


def test_info_server_json(fake_webui: FakeWebUI) -> None:
    result = runner.invoke(app, ["--url", fake_webui.url, "info", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["reachable"] is True
    assert data["version"] == "v1.10.1"
    assert data["current_model"] == "random-sd15.safetensors [6d338e2388]"
    assert data["clip_skip"] == 1
    assert data["busy"] is False
    assert data["error"] is None


def test_info_server_version_on_sdnext_and_nowebui(make_fake_webui: MakeFake) -> None:
    sdnext = make_fake_webui(profile="sdnext")
    _, table = server_info(sdnext)
    assert table["version"] == "2026-07-23 (058a7f0cf, master) (from /sdapi/v1/version)"
    assert table["flavour"] == "SD.Next (UI mode)"  # it always serves its UI
    assert table["schedulers"] == "none (SD.Next's own settings pick the schedule)"
    assert table["clip skip"] == "1"  # its own option `clip_skip`
    assert sdnext.requests_to("/sdapi/v1/schedulers") == []  # a 500 there: not asked
    _, table = server_info(make_fake_webui(profile="a1111-nowebui"))
    assert table["version"] == "unknown until a generation reports it"


def test_info_server_shows_a_running_job(fake_webui: FakeWebUI) -> None:
    import requests

    fake_webui.pause_at_step(1)
    body = {"prompt": "x", "steps": 4, "width": 64, "height": 64}
    job = threading.Thread(
        target=requests.post, args=(fake_webui.url + "/sdapi/v1/txt2img",), kwargs={"json": body}
    )
    job.start()
    try:
        assert fake_webui.wait_paused()
        result, table = server_info(fake_webui)
        assert result.exit_code == 0
        running = table["job running"]
        assert running.startswith("yes, ") and running.endswith("% (scripts_txt2img)")
    finally:
        fake_webui.resume()
        job.join(10)
    _, table = server_info(fake_webui)
    assert table["job running"] == "no"


def test_info_server_down_still_shows_the_url_and_exits_3(dead_url: str) -> None:
    result, table = server_info(dead_url)
    assert result.exit_code == 3
    assert table == {"url": f"{dead_url} (from flag)", "reachable": "no"}
    assert (
        result.stderr
        == f"sdcli: error: cannot reach {dead_url} (is the web UI running with --api?)\n"
    )


def test_info_server_down_json_exits_3(dead_url: str) -> None:
    result = runner.invoke(app, ["--url", dead_url, "info", "--json"])
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data["reachable"] is False
    assert data["version"] is None
    assert "cannot reach" in data["error"]


def test_info_server_unauthorised_exits_4(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(auth=("user", "secret"))
    result, table = server_info(fake)
    assert result.exit_code == 4
    assert table["reachable"] == "yes"
    assert "model" not in table
    assert "refused access (401" in result.stderr
    ok = runner.invoke(app, ["--url", fake.url, "--auth", "user:secret", "info"])
    assert ok.exit_code == 0, ok.stderr


def test_info_server_a_failing_endpoint_is_a_warning(fake_webui: FakeWebUI) -> None:
    fake_webui.fail("/sdapi/v1/samplers", 500)
    result, table = server_info(fake_webui)
    assert result.exit_code == 0
    assert table["samplers"] == "unknown"
    assert table["model"] == "random-sd15.safetensors [6d338e2388]"
    assert result.stderr.startswith("sdcli: warning: cannot read the samplers: ")


def test_info_server_url_from_environment(
    fake_webui: FakeWebUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCLI_URL", fake_webui.url)
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"url\t{fake_webui.url} (from env)"


def test_generate_from_image_resolves_the_model_like_any_other(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """The image names its model by file stem; generate resolves it to the exact title."""
    result = runner.invoke(
        app,
        ["--url", fake_webui.url, "generate", "--from-image", str(SAMPLE_PNG), "-o", str(tmp_path)],
    )
    assert result.exit_code == 0, result.stderr
    [sent] = [r.json for r in fake_webui.requests_to("/sdapi/v1/txt2img")]
    assert sent["prompt"] == "a cat"
    assert sent["seed"] == 634212383
    assert (
        sent["override_settings"]["sd_model_checkpoint"] == "random-sd15.safetensors [6d338e2388]"
    )
    saved = Path(result.stdout.strip())
    assert saved.parent == tmp_path and saved.suffix == ".png"
