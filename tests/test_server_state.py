"""The server after sdcli ran: every option as found (the override leak), and jobs left running.

End to end over loopback HTTP against the fake web UI, which reproduces the real v1.10.1's and
Forge's `process_images`: only the overridden keys the server already holds are restored
(fixtures/more/override-settings-leak.json).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import SdcliProcess, error_line, invoke, run_sdcli

MakeFake = Callable[..., FakeWebUI]
V1 = "/sdapi/v1"
TXT2IMG = f"{V1}/txt2img"
OPTIONS = f"{V1}/options"
INTERRUPT = f"{V1}/interrupt"
SKIP = f"{V1}/skip"
TINY = ("--steps", "2", "-W", "64", "-H", "64")
# The server's record of the weights in memory, not a setting: after a per-request model it names
# that model's weights until the next job reloads the selected one (the real server does the same).
BOOKKEEPING = {"sd_checkpoint_hash"}


def options(fake: FakeWebUI) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(fake.url + OPTIONS, timeout=30).json()
    return {k: v for k, v in answer.items() if k not in BOOKKEEPING}


# --- the override leak -----------------------------------------------------------------------

KINDS_OF_RUN: list[tuple[str, tuple[str, ...], int]] = [
    ("plain", (), 0),
    ("clip skip", ("--clip-skip", "2"), 0),
    ("model", ("--model", "counterfeit"), 0),
    ("clip skip and model", ("-p", "chibi", *TINY, "--model", "qteamix"), 0),
    ("a bool setting", ("--set", "override_settings.img2img_fix_steps=true"), 0),
    (
        "a setting and clip skip again",
        ("--clip-skip", "3", "--set", "override_settings.tiling=true"),
        0,
    ),
    # the server applies clip skip, then fails on the unknown key (500 KeyError)
    ("failure", ("--clip-skip", "2", "--set", "override_settings.no_such_option=1"), 1),
]


@pytest.mark.parametrize("profile", ["a1111", "a1111-nowebui", "a1111-1.8", "forge"])
def test_every_kind_of_run_leaves_every_option_as_found(
    make_fake_webui: MakeFake, profile: str, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile=profile)
    before = options(fake)
    assert type(before["CLIP_stop_at_last_layers"]) is int  # a fresh server does not hold it
    for name, args, code in KINDS_OF_RUN:
        r = run_sdcli("--url", fake.url, "generate", "-q", *TINY, *args, "x", "-o", str(tmp_path))
        assert r.returncode == code, (name, r.stderr)
        assert options(fake) == before, name  # 1 == 1.0: pinning may make an int a float
    plain = run_sdcli("--url", fake.url, "generate", "--json", *TINY, "x", "-o", str(tmp_path))
    assert "Clip skip" not in plain.stdout  # the next job of anybody runs with the server's own


def test_ctrl_c_leaves_every_option_as_found(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    before = options(fake_webui)
    fake_webui.pause_at_step(1)  # the overrides are applied by then
    p = spawn_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "--clip-skip", "2",
        "--set", "override_settings.img2img_fix_steps=true", "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert fake_webui.wait_paused(30)
    p.proc.send_signal(signal.SIGINT)
    code, _, stderr = p.finish()
    assert code == 130, stderr
    assert fake_webui.wait_idle(30)
    assert options(fake_webui) == before


def test_a_timeout_leaves_every_option_as_found_and_says_the_job_runs_on(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    before = options(fake_webui)
    fake_webui.pause_at_step(1)
    r = run_sdcli(
        "--url", fake_webui.url, "--timeout", "0.5", "generate", "-q", *TINY,
        "--clip-skip", "2", "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 3
    line = error_line(r.stderr)
    assert f"did not answer POST {TXT2IMG} within 0.5 s" in line
    assert "the server is still generating (`sdcli interrupt` stops it)" in line
    assert fake_webui.wait_paused(0)  # it really is
    fake_webui.resume()
    assert fake_webui.wait_idle(30)
    assert options(fake_webui) == before


def test_overrides_cost_one_options_read_and_a_pin_only_when_needed(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    def option_calls(*args: str, cache: bool = False) -> list[str]:
        fake_webui.clear_requests()
        r = run_sdcli(
            "--url", fake_webui.url, *([] if cache else ["--no-cache"]), "generate", "-q",
            *TINY, *args, "x", "-o", str(tmp_path),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return [q.method for q in fake_webui.requests if q.path == OPTIONS]

    assert option_calls() == []  # nothing overridden: nothing asked
    assert option_calls("--model", "counterfeit") == []  # the checkpoint is always restored
    assert option_calls("--clip-skip", "2") == ["GET", "POST"]  # not held yet: pinned
    assert option_calls("--clip-skip", "2") == ["GET"]  # held now (GET shows 1.0): no pin
    assert option_calls("--clip-skip", "1") == ["GET"]
    # the list cache remembers that the server holds it: not even the GET
    assert option_calls("--clip-skip", "2", cache=True) == []


def test_the_pin_sends_the_value_the_server_has(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = run_sdcli(
        "--url", fake_webui.url, "--debug", "generate", "-q", *TINY, "--clip-skip", "2", "x",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [pin] = [q.json for q in fake_webui.requests if q.method == "POST" and q.path == OPTIONS]
    assert pin == {"CLIP_stop_at_last_layers": 1}
    assert "sdcli: debug: override_settings: pinned CLIP_stop_at_last_layers to its value 1" in (
        r.stderr
    )
    again = run_sdcli(
        "--url", fake_webui.url, "--no-cache", "--debug", "generate", "-q", *TINY,
        "--clip-skip", "2", "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert "CLIP_stop_at_last_layers is held (1.0): the server restores it" in again.stderr
    cached = run_sdcli(
        "--url", fake_webui.url, "--debug", "generate", "-q", *TINY, "--clip-skip", "2", "x",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert "CLIP_stop_at_last_layers is held (cached): the server restores it" in cached.stderr


def test_a_server_whose_config_holds_the_key_is_not_written_to(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(config_options={"CLIP_stop_at_last_layers": 1})
    before = options(fake)
    fake.clear_requests()
    r = run_sdcli(
        "--url", fake.url, "generate", "-q", *TINY, "--clip-skip", "2", "x", "-o", str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    assert [q.method for q in fake.requests if q.path == OPTIONS] == ["GET"]
    assert options(fake) == before


def test_no_pin_when_the_override_is_meant_to_stick(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "--clip-skip", "2",
        "--set", "override_settings_restore_afterwards=false", "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [q.path for q in fake_webui.requests if q.path == OPTIONS] == []
    assert options(fake_webui)["CLIP_stop_at_last_layers"] == 2


# --- jobs left running: interrupt, skip ------------------------------------------------------


@pytest.mark.parametrize("command", ["interrupt", "skip"])
def test_interrupt_and_skip_on_an_idle_server_send_nothing(
    fake_webui: FakeWebUI, command: str
) -> None:
    r = run_sdcli("--url", fake_webui.url, command)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr == f"no job was running: nothing to {command}\n"
    assert fake_webui.requests_to(INTERRUPT) == fake_webui.requests_to(SKIP) == []


def test_interrupt_stops_another_clients_job(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    fake_webui.pause_at_step(3)
    job = spawn_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "--steps", "20", "x", "-o", str(tmp_path)
    )
    assert fake_webui.wait_paused(30)
    r = run_sdcli("--url", fake_webui.url, "interrupt")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "interrupted the running job (step 3/20)\n"
    assert len(fake_webui.requests_to(INTERRUPT)) == 1
    code, stdout, stderr = job.finish()  # the other client gets its partial image, as the real
    assert code == 0, stderr
    assert len(stdout.splitlines()) == 1


def test_skip_ends_the_current_image_and_the_job_goes_on(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    fake_webui.pause_at_step(2)
    job = spawn_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "--steps", "6",
        "--set", "n_iter=2", "x", "-o", str(tmp_path),
    )  # fmt: skip
    assert fake_webui.wait_paused(30)
    r = run_sdcli("--url", fake_webui.url, "skip")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "skipped the current image (Batch 1 out of 2, step 2/6)\n"
    code, stdout, stderr = job.finish()
    assert code == 0, stderr
    assert len(stdout.splitlines()) == 2  # both images, as captured (queue-skip-pending.json)


def test_set_model_timeout_says_the_server_is_still_loading(
    make_fake_webui: MakeFake,
) -> None:
    fake = make_fake_webui(model_load_delay=30)
    r = run_sdcli("--url", fake.url, "--timeout", "0.5", "set-model", "counterfeit")
    assert r.returncode == 3
    line = error_line(r.stderr)
    assert f"did not answer POST {OPTIONS} within 0.5 s" in line
    assert "the server is still loading anime/counterfeitV30_v30.safetensors [cbfba64e66]" in line


def test_ctrl_c_during_set_model_says_the_server_is_still_loading(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess]
) -> None:
    fake = make_fake_webui(model_load_delay=30)
    p = spawn_sdcli("--url", fake.url, "set-model", "counterfeit")
    assert fake.wait_for_request(OPTIONS, count=2, timeout=30)  # the read, then the switch
    p.proc.send_signal(signal.SIGINT)
    code, stdout, stderr = p.finish()
    assert code == 130
    assert stdout == ""
    assert error_line(stderr) == (
        "sdcli: error: interrupted; the server is still loading "
        "anime/counterfeitV30_v30.safetensors [cbfba64e66] (a load cannot be stopped; "
        "`sdcli models` shows the model once it is loaded)"
    )


def test_interrupt_and_skip_are_in_the_help() -> None:
    r = invoke(["--help"])
    assert r.exit_code == 0
    assert "interrupt" in r.stdout and "skip" in r.stdout


def test_the_fakes_interrupt_and_skip_answer_as_captured(make_fake_webui: MakeFake) -> None:
    # Forge (fixtures/forge/interrupt.json) and A1111 (fixtures/more/queue-skip-pending.json):
    # the answers say nothing of whether a job was running, hence sdcli's progress read first.
    fixtures = Path(__file__).parent / "fixtures"
    forge = json.loads((fixtures / "forge" / "interrupt.json").read_text(encoding="utf-8"))
    [interrupted] = [
        e["response"]["body"]
        for e in forge.values()
        if isinstance(e, dict) and e.get("request", {}).get("path") == INTERRUPT
    ]
    queue = json.loads((fixtures / "more" / "queue-skip-pending.json").read_text(encoding="utf-8"))
    [skipped] = [e["response"] for e in queue["timeline"] if e.get("request") == f"POST {SKIP}"]
    for profile in ("a1111", "forge"):
        fake = make_fake_webui(profile=profile)
        assert requests.post(fake.url + INTERRUPT, timeout=30).json() == interrupted == {}
        assert requests.post(fake.url + SKIP, timeout=30).json() == skipped is None
