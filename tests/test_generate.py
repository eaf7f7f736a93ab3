"""`sdcli generate` end to end over loopback HTTP against the fake web UI."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import requests

from sdcli.pngmeta import get_parameters, iter_chunks
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import ANSI, generate, invoke, run_sdcli

TXT2IMG = "/sdapi/v1/txt2img"
# The blog post's settings, literally (../shared/seed): the chibi preset must send each of them.
SEED_NEGATIVE = (
    "EasyNegative, (worst quality:1.4), (low quality:1.4),  extra fingers, fewer fingers, "
    "blurry, watermark, logo, text, error, blurry, inaccurate eyes, extra digit,fewer digits, "
    "bad anatomy, bad hands, username, words"
)


def server_bytes(fake: FakeWebUI, body: dict[str, object], index: int = 0) -> bytes:
    """What the fake sends for this exact request body (its images are deterministic)."""
    body = {k: v for k, v in body.items() if k != "force_task_id"}
    answer = requests.post(fake.url + TXT2IMG, json=body, timeout=30).json()
    return base64.b64decode(answer["images"][index])


def saved_paths(stdout: str) -> list[Path]:
    return [Path(line) for line in stdout.splitlines()]


def test_chibi_preset_sends_the_seed_posts_settings_one_by_one(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-p", "chibi", "1boy, chibi", "-o", str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    body = fake_webui.requests_to(TXT2IMG)[0].json
    assert body["prompt"] == "1boy, chibi"
    assert body["negative_prompt"] == SEED_NEGATIVE
    assert body["sampler_name"] == "DPM++ 2M"
    assert body["scheduler"] == "Karras"
    assert body["steps"] == 27
    assert body["cfg_scale"] == 7
    assert body["width"] == 512 and body["height"] == 512
    assert body["batch_size"] == 1
    # The post's clip skip 2 must really reach the server, as a setting override.
    assert body["override_settings"] == {"CLIP_stop_at_last_layers": 2}
    assert body["override_settings_restore_afterwards"] is True
    assert "clip_skip" not in body
    assert None not in body.values()
    assert body["force_task_id"].startswith("task(")
    text = get_parameters(saved_paths(r.stdout)[0].read_bytes())
    assert text is not None and "Clip skip: 2" in text and "Schedule type: Karras" in text


def test_stdout_is_exactly_the_paths_and_stderr_is_plain(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = run_sdcli(
        "--url",
        fake_webui.url,
        "generate",
        "-p",
        "draft",
        "-b",
        "2",
        "a",
        "cat",
        "-o",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    paths = saved_paths(r.stdout)
    assert len(paths) == 2
    assert all(p.parent == tmp_path and p.suffix == ".png" and p.is_file() for p in paths)
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # nothing else written, no temp files
    assert ANSI not in r.stderr
    assert "saved 2 images" in r.stderr
    assert fake_webui.requests_to(TXT2IMG)[0].json["prompt"] == "a cat"


def test_saved_file_is_the_servers_png_byte_for_byte(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-p", "draft", "--seed", "7", "x", "-o", str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    sent = fake_webui.requests_to(TXT2IMG)[0].json
    assert saved_paths(r.stdout)[0].read_bytes() == server_bytes(fake_webui, sent)


def test_png_without_parameters_gets_exactly_one_chunk_spliced_in(
    make_fake_webui: object, tmp_path: Path
) -> None:
    fake: FakeWebUI = make_fake_webui(png_parameters=False)  # type: ignore[operator]
    prompt = "猫と犬, 🐱 emoji"
    r = run_sdcli(
        "--url", fake.url, "generate", "-p", "draft", "--seed", "3", prompt, "-o", str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    data = saved_paths(r.stdout)[0].read_bytes()
    original = server_bytes(fake, fake.requests_to(TXT2IMG)[0].json)
    assert get_parameters(original) is None
    text = get_parameters(data)
    assert text is not None and text.startswith(prompt) and "Seed: 3" in text
    chunks = [kind for kind, _, _ in iter_chunks(data)]
    assert chunks.count(b"iTXt") == 1  # not Latin-1: UTF-8 iTXt
    # Everything but the new chunk is the server's bytes, unchanged and in order.
    assert len(data) - len(original) == 12 + len(b"parameters\0\0\0\0\0" + text.encode())
    assert data.startswith(original[:33]) and data.endswith(original[33:])


def test_json_lines_carry_path_seed_prompt_and_parsed_parameters(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = run_sdcli(
        "--url",
        fake_webui.url,
        "generate",
        "-p",
        "sd15",
        "--seed",
        "100",
        "-b",
        "2",
        "--json",
        "a lighthouse",
        "-o",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["seed"] for row in rows] == [100, 101]
    for row in rows:
        assert Path(row["path"]).is_file()
        assert row["prompt"] == "a lighthouse"
        assert row["negative_prompt"].startswith("lowres")
        assert row["model"] == "random-sd15"
        assert row["parameters"]["Steps"] == 25
        assert row["parameters"]["Size-1"] == 512
        assert row["infotext"].startswith("a lighthouse\n")


def test_count_runs_batches_in_a_row_with_continuing_seeds(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = run_sdcli(
        "--url",
        fake_webui.url,
        "generate",
        "-p",
        "draft",
        "--seed",
        "10",
        "-b",
        "2",
        "-c",
        "2",
        "--json",
        "x",
        "-o",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["seed"] for x in r.stdout.splitlines()] == [10, 11, 12, 13]
    assert [req.json["seed"] for req in fake_webui.requests_to(TXT2IMG)] == [10, 12]


def test_prompts_from_stdin_run_in_one_process(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    stdin = "a cat\n\n# a comment\n  a dog  \nどうぶつ\n"
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-p", "draft", "-", "-o", str(tmp_path), input=stdin
    )
    assert r.returncode == 0, r.stderr
    assert len(saved_paths(r.stdout)) == 3
    assert [q.json["prompt"] for q in fake_webui.requests_to(TXT2IMG)] == [
        "a cat",
        "a dog",
        "どうぶつ",
    ]
    # One process, one session: the name lookups happen once, not per prompt.
    assert len(fake_webui.requests_to("/sdapi/v1/samplers")) == 1


def test_prompts_file_and_template(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n", encoding="utf-8")
    out = tmp_path / "out"
    r = run_sdcli(
        "--url",
        fake_webui.url,
        "generate",
        "--prompts-file",
        str(prompts),
        "-o",
        str(out),
        "--set",
        "steps=2",
        "--name",
        "{prompt_slug}-{seed}",
    )
    assert r.returncode == 0, r.stderr
    assert [p.name.split("-")[0] for p in saved_paths(r.stdout)] == ["one", "two"]
    assert [q.json["steps"] for q in fake_webui.requests_to(TXT2IMG)] == [2, 2]


def test_existing_files_are_never_overwritten_unless_asked(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    args = [
        "--url",
        fake_webui.url,
        "generate",
        "-p",
        "draft",
        "--name",
        "same",
        "x",
        "-o",
        str(tmp_path),
    ]
    first = run_sdcli(*args)
    second = run_sdcli(*args)
    assert [Path(first.stdout.strip()).name, Path(second.stdout.strip()).name] == [
        "same.png",
        "same-1.png",
    ]
    third = run_sdcli(*args, "--overwrite")
    assert Path(third.stdout.strip()).name == "same.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same-1.png", "same.png"]


def test_dry_run_without_a_server_prints_the_body_as_typed(tmp_path: Path) -> None:
    r = run_sdcli(
        "--url",
        "http://127.0.0.1:9",
        "generate",
        "-p",
        "chibi",
        "--model",
        "qteamix",
        "--dry-run",
        "x",
    )
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["override_settings"] == {
        "CLIP_stop_at_last_layers": 2,
        "sd_model_checkpoint": "qteamix",
    }
    assert "force_task_id" not in body
    assert r.stderr == (
        "sdcli: warning: cannot reach http://127.0.0.1:9: names are shown as typed, not as the "
        "server would get them\n"
    )


def test_dry_run_shows_the_body_the_server_would_really_get(fake_webui: FakeWebUI) -> None:
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-p", "draft", "--sampler", "DPM++ 2M Karras",
        "--model", "counterfeit", "--set", "enable_hr=true", "--set", "hr_upscaler=latent",
        "--dry-run", "x",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert (body["sampler_name"], body["scheduler"]) == ("DPM++ 2M", "Karras")
    assert body["override_settings"]["sd_model_checkpoint"] == (
        "anime/counterfeitV30_v30.safetensors [cbfba64e66]"
    )
    assert body["hr_upscaler"] == "Latent"  # the server's spelling
    assert body["denoising_strength"] == 0.7
    assert "hires fix without denoising_strength: sending the web UI's default 0.7" in r.stderr
    # read-only: lists only, nothing generated, no option written
    assert {q.method for q in fake_webui.requests} == {"GET"}


def test_dry_run_still_refuses_a_wrong_name(fake_webui: FakeWebUI) -> None:
    r = run_sdcli("--url", fake_webui.url, "generate", "--sampler", "Euler b", "--dry-run", "x")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "no sampler 'Euler b'" in r.stderr


def test_model_flag_is_resolved_to_the_exact_title(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "--model", "counterfeit", "x")
    assert r.exit_code == 0, r.stderr
    body = fake_webui.requests_to(TXT2IMG)[0].json
    assert (
        body["override_settings"]["sd_model_checkpoint"]
        == "anime/counterfeitV30_v30.safetensors [cbfba64e66]"
    )


def test_unknown_sampler_exits_2_before_generating(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "--sampler", "Euler b", "x")
    assert r.exit_code == 2
    assert "no sampler 'Euler b'" in r.stderr and "did you mean" in r.stderr
    assert r.stdout == ""
    assert fake_webui.requests_to(TXT2IMG) == []


def test_combined_sampler_name_is_split_for_a_new_server(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(fake_webui, tmp_path, "--sampler", "dpm++ 2m karras", "x")
    assert r.exit_code == 0, r.stderr
    body = fake_webui.requests_to(TXT2IMG)[0].json
    assert (body["sampler_name"], body["scheduler"]) == ("DPM++ 2M", "Karras")


def test_bad_values_exit_2_and_send_nothing(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    for args, word in [
        (["--steps", "0"], "steps"),
        (["--width", "500"], "width"),
        (["--cfg", "-1"], "cfg"),
        (["-b", "0"], "--batch-size"),
        (["--size", "big"], "--size"),
        (["--set", "oops"], "--set"),
        (["--name", "{nope}"], "nope"),
        (["--name", "{seed:q}"], "seed:q"),
        (["-p", "no-such-preset"], "no-such-preset"),
    ]:
        r = generate(fake_webui, tmp_path, *args, "x")
        assert r.exit_code == 2, (args, r.stderr)
        assert word in r.stderr, (args, r.stderr)
    assert fake_webui.requests == []


def test_missing_prompt_is_a_usage_error() -> None:
    r = invoke(["generate"])
    assert r.exit_code == 2
    assert "give a prompt" in r.stderr


def test_server_that_ignores_the_sampler_draws_a_warning(
    make_fake_webui: object, tmp_path: Path
) -> None:
    # --set goes around sdcli's own check, as an old preset or a script might: the real server
    # then silently falls back to DPM++ 2M with status 200 (fixtures/errors.md).
    fake: FakeWebUI = make_fake_webui()  # type: ignore[operator]
    r = generate(fake, tmp_path, "--set", "sampler_name=Nope", "x")
    assert r.exit_code == 0, r.stderr
    assert re.search(r"warning: .*sampler 'DPM\+\+ 2M' instead of 'Nope'", r.stderr)


def test_debug_shows_one_line_per_http_exchange_and_no_secret(
    make_fake_webui: object, tmp_path: Path
) -> None:
    fake: FakeWebUI = make_fake_webui(auth=("me", "hunter2"))  # type: ignore[operator]
    r = run_sdcli(
        "--debug",
        "--url",
        fake.url,
        "--auth",
        "me:hunter2",
        "generate",
        "-p",
        "draft",
        "x",
        "-o",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"^sdcli: debug: POST /sdapi/v1/txt2img -> 200, \d+ bytes", r.stderr, re.M)
    assert "hunter2" not in r.stderr + r.stdout
    assert len(saved_paths(r.stdout)) == 1


def test_a1111_run_with_preset_asks_no_needless_probe(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = generate(fake_webui, tmp_path, "-p", "chibi", "x")
    assert r.exit_code == 0, r.stderr
    # the flavour is asked once (SD.Next has /version), each list once
    assert len(fake_webui.requests_to("/sdapi/v1/version")) == 1
    assert len(fake_webui.requests_to("/sdapi/v1/schedulers")) == 1
    assert len(fake_webui.requests_to("/sdapi/v1/samplers")) == 1
