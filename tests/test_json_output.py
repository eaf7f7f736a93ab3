"""JSON that scripts can use (issue 10, item 9): typed values, the usual settings at the top, and
one JSON object per line from every command that has `--json`. End to end against the fake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import invoke, run_sdcli

TOP_LEVEL = {
    "width": int,
    "height": int,
    "steps": int,
    "sampler": str,
    "scheduler": str,
    "cfg_scale": float,
    "seed": int,
    "model": str,
    "interrupted": bool,
}
KEPT = ("path", "prompt", "negative_prompt", "index", "batch", "parameters", "infotext")


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line is one JSON object; nothing else is there."""
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert rows and all(isinstance(row, dict) for row in rows), stdout
    return rows


def test_generate_json_has_typed_settings_at_the_top(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    done = run_sdcli(
        "--url", fake_webui.url, "generate", "--json", "--steps", "3", "--cfg", "6.5",
        "-W", "64", "-H", "96", "--seed", "42", "--sampler", "DPM++ 2M", "--scheduler", "karras",
        "-b", "2", "-o", str(tmp_path), "a cat",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json_lines(done.stdout)
    assert len(rows) == 2
    for row, seed in zip(rows, (42, 43), strict=True):
        for key, kind in TOP_LEVEL.items():
            assert isinstance(row[key], kind), (key, row[key])
        assert all(key in row for key in KEPT)
        assert (row["width"], row["height"], row["steps"]) == (64, 96, 3)
        assert (row["sampler"], row["scheduler"], row["cfg_scale"]) == ("DPM++ 2M", "Karras", 6.5)
        assert row["seed"] == seed and row["interrupted"] is False
        assert row["model"] == "random-sd15"
        params = row["parameters"]
        assert params["Steps"] == 3 and params["Seed"] == seed and params["CFG scale"] == 6.5
        assert params["Size-1"] == 64 and params["Size-2"] == 96
        assert isinstance(params["Model hash"], str) and isinstance(params["Version"], str)
        assert params["Prompt"] == "a cat"


def test_a_number_looking_name_stays_a_string() -> None:
    from sdcli.infotext import parse_infotext, typed_parameters

    info = parse_infotext(
        "42\nNegative prompt: 7\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 007, "
        "Size: 512x768, Model hash: 1234567890, Model: 1, Version: 1.10, Eta: 1e-05"
    )
    typed = typed_parameters(info)
    assert typed["Steps"] == 20 and typed["CFG scale"] == 7 and typed["Eta"] == 1e-05
    assert typed["Seed"] == "007"  # not a number as written: kept as the text it is
    assert (typed["Size-1"], typed["Size-2"]) == (512, 768)
    assert typed["Model hash"] == "1234567890" and typed["Model"] == "1"
    assert typed["Version"] == "1.10"
    assert (typed["Prompt"], typed["Negative prompt"]) == ("42", "7")


def test_images_of_an_interrupted_job_say_so(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.pause_at_step(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdcli", "--url", fake_webui.url, "generate", "--json", "-q",
         "--steps", "20", "-W", "64", "-H", "64", "-o", str(tmp_path), "x"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    try:
        assert fake_webui.wait_paused(30)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)  # a safety net, not a timing test
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        fake_webui.resume()
    assert proc.returncode == 130, stderr
    [row] = json_lines(stdout)
    assert row["interrupted"] is True
    assert Path(row["path"]).is_file()


def test_info_image_json_is_typed_like_generate(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    made = run_sdcli(
        "--url", fake_webui.url, "generate", "--json", "--steps", "2", "-W", "64", "-H", "64",
        "--seed", "5", "-o", str(tmp_path), "a dog",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    [generated] = json_lines(made.stdout)
    read = run_sdcli("info", "--json", generated["path"])
    assert read.returncode == 0, read.stderr
    [row] = json_lines(read.stdout)
    for key in ("width", "height", "steps", "sampler", "scheduler", "cfg_scale", "seed"):
        assert row[key] == generated[key], key
    assert row["parameters"] == generated["parameters"]
    assert row["model"] == generated["model"]


@pytest.mark.parametrize(
    ("args", "items"),
    [
        (("models", "--json"), 6),  # the fake's checkpoints
        (("samplers", "--json"), 20 + 12),  # its samplers and schedulers
        (("presets", "list", "--json"), 4),  # the built-ins
        (("info", "--json"), 1),  # one server
    ],
)
def test_every_list_command_writes_one_json_object_per_item_and_line(
    fake_webui: FakeWebUI, args: tuple[str, ...], items: int
) -> None:
    done = run_sdcli("--url", fake_webui.url, *args)
    assert done.returncode == 0, done.stderr
    assert len(json_lines(done.stdout)) == items


def test_samplers_json_lines_say_which_kind_they_are(fake_webui: FakeWebUI) -> None:
    result = invoke(["--url", fake_webui.url, "samplers", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json_lines(result.stdout)
    kinds = [row["kind"] for row in rows]
    assert kinds == sorted(kinds) and set(kinds) == {"sampler", "scheduler"}
    first = rows[0]
    assert first == {
        "kind": "sampler",
        "name": "DPM++ 2M",
        "aliases": ["k_dpmpp_2m"],
        "default_scheduler": "Karras",
        "options": {"scheduler": "karras"},
    }
    assert {"kind": "scheduler", "label": "Automatic", "name": "automatic", "aliases": []} in rows


def test_a_server_without_schedulers_has_only_sampler_lines(make_fake_webui: Any) -> None:
    fake = make_fake_webui(profile="a1111-1.8")
    result = invoke(["--url", fake.url, "samplers", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json_lines(result.stdout)
    assert {row["kind"] for row in rows} == {"sampler"}
    assert "DPM++ 2M Karras" in [row["name"] for row in rows]
    assert "no /schedulers" in result.stderr
