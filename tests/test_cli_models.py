"""`sdcli set-model`, `models`, `samplers` end to end against the fake web UI."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sdcli.cli.app import app
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli, sdcli

COUNTERFEIT = "anime/counterfeitV30_v30.safetensors [cbfba64e66]"
RANDOM = "random-sd15.safetensors [6d338e2388]"
OPTIONS = "/sdapi/v1/options"
runner = CliRunner()
MakeFake = Callable[..., FakeWebUI]


def posts_to_options(fake: FakeWebUI) -> list[Any]:
    return [r.json for r in fake.requests_to(OPTIONS) if r.method == "POST"]


# --- set-model ---------------------------------------------------------------------------------


def test_set_model_resolves_a_short_name_and_sends_the_exact_title(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "set-model", "counterfeit")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == COUNTERFEIT + "\n"
    assert posts_to_options(fake_webui) == [{"sd_model_checkpoint": COUNTERFEIT}]
    assert fake_webui.current_model == COUNTERFEIT
    assert f"counterfeit -> {COUNTERFEIT}" in result.stderr


@pytest.mark.parametrize(
    "typed",
    [
        COUNTERFEIT,
        "anime_counterfeitV30_v30",  # model name
        "counterfeitV30_v30.safetensors",  # file name
        "counterfeitV30_v30",  # file name without extension
        "cbfba64e66",  # short hash
        "ANIME/COUNTERFEITV30_V30.SAFETENSORS",  # any case
        "counterf",  # unique prefix of the file name
    ],
)
def test_set_model_accepts_every_name_a_person_types(fake_webui: FakeWebUI, typed: str) -> None:
    result = sdcli(fake_webui, "set-model", typed)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == COUNTERFEIT + "\n"
    assert posts_to_options(fake_webui) == [{"sd_model_checkpoint": COUNTERFEIT}]


def test_set_model_by_sha256(fake_webui: FakeWebUI) -> None:
    models = json.loads(sdcli(fake_webui, "models", "--json").stdout.splitlines()[2])
    assert models["title"] == COUNTERFEIT
    result = sdcli(fake_webui, "set-model", models["sha256"])
    assert result.exit_code == 0
    assert result.stdout == COUNTERFEIT + "\n"


def test_set_model_already_loaded_sends_nothing(fake_webui: FakeWebUI) -> None:
    assert fake_webui.current_model == RANDOM
    result = sdcli(fake_webui, "set-model", "random-sd15")
    assert result.exit_code == 0
    assert result.stdout == RANDOM + "\n"
    assert "already loaded" in result.stderr
    assert posts_to_options(fake_webui) == []


def test_set_model_already_loaded_under_a_bare_alias(fake_webui: FakeWebUI) -> None:
    """Some clients store a bare alias in the option; it still names the loaded model."""
    fake_webui.options["sd_model_checkpoint"] = "random-sd15"
    result = sdcli(fake_webui, "set-model", RANDOM)
    assert result.exit_code == 0
    assert result.stdout == RANDOM + "\n"
    assert posts_to_options(fake_webui) == []


def test_set_model_reverted_load_exits_1(fake_webui: FakeWebUI) -> None:
    fake_webui.fail_next_model_load()
    result = sdcli(fake_webui, "set-model", "qteamixQ_gamma")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert posts_to_options(fake_webui) == [
        {"sd_model_checkpoint": "qteamixQ_gamma.safetensors [58174ec2a4]"}
    ]
    assert "did not load 'qteamixQ_gamma.safetensors [58174ec2a4]'" in result.stderr
    assert f"it still has '{RANDOM}'" in result.stderr
    assert result.stderr.count("sdcli: error:") == 1
    assert fake_webui.current_model == RANDOM


def test_set_model_never_hashed_reports_the_title_the_load_gave_it(
    fake_webui: FakeWebUI,
) -> None:
    """Titles gain " [hash]" at the first load: the answer is the server's normalised title."""
    listed = [
        json.loads(line) for line in sdcli(fake_webui, "models", "--json").stdout.splitlines()
    ]
    fresh = next(m for m in listed if m["hash"] is None)
    result = sdcli(fake_webui, "set-model", fresh["name"])
    assert result.exit_code == 0, result.stderr
    assert posts_to_options(fake_webui) == [{"sd_model_checkpoint": fresh["title"]}]
    loaded = result.stdout.strip()
    assert loaded.startswith(fresh["title"] + " [") and loaded == fake_webui.current_model


def test_set_model_ambiguous_lists_candidates_and_exits_2(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "set-model", "safetensors")  # part of every file name
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "'safetensors' matches several checkpoints" in result.stderr
    assert COUNTERFEIT in result.stderr and RANDOM in result.stderr
    assert posts_to_options(fake_webui) == []


def test_set_model_unknown_suggests_and_exits_2(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "set-model", "qteamix_gama")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "no checkpoint matches 'qteamix_gama'" in result.stderr
    assert "did you mean" in result.stderr and "qteamixQ_gamma" in result.stderr
    assert posts_to_options(fake_webui) == []


def test_set_model_refresh_rescans_first(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "set-model", "--refresh", "counterfeit")
    assert result.exit_code == 0, result.stderr
    paths = [r.path for r in fake_webui.requests if r.method == "POST"]
    assert paths == ["/sdapi/v1/refresh-checkpoints", OPTIONS]


def test_set_model_refused_by_the_server_exits_1(fake_webui: FakeWebUI) -> None:
    fake_webui.fail(OPTIONS, 500)
    result = sdcli(fake_webui, "set-model", "counterfeit")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "500" in result.stderr


def test_set_model_on_forge_loads_lazily_and_succeeds(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="forge")
    result = sdcli(fake, "set-model", "counterfeit")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == COUNTERFEIT + "\n"
    assert fake.options["sd_model_checkpoint"] == COUNTERFEIT


def test_set_model_server_down_exits_3(dead_url: str) -> None:
    result = sdcli(dead_url, "set-model", "counterfeit")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"sdcli: error: cannot reach {dead_url}")


def test_set_model_needs_credentials_exits_4(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(auth=("user", "secret"))
    result = sdcli(fake, "set-model", "counterfeit")
    assert result.exit_code == 4
    assert "--auth" in result.stderr
    assert posts_to_options(fake) == []
    ok = sdcli(fake, "--auth", "user:secret", "set-model", "counterfeit")
    assert ok.exit_code == 0, ok.stderr
    assert ok.stdout == COUNTERFEIT + "\n"


# --- models ------------------------------------------------------------------------------------


def test_models_piped_marks_the_current_one(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "models")
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines[0] == ["*", "random-sd15", RANDOM, "6d338e2388"]
    assert ["", "anime_counterfeitV30_v30", COUNTERFEIT, "cbfba64e66"] in lines
    assert sum(1 for line in lines if line[0] == "*") == 1
    assert all(len(line) == 4 for line in lines)


def test_models_json_lines_follow_a_switch(fake_webui: FakeWebUI) -> None:
    assert sdcli(fake_webui, "set-model", "counterfeit").exit_code == 0
    result = sdcli(fake_webui, "models", "--json")
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["title"] for m in items if m["current"]] == [COUNTERFEIT]
    first = items[0]
    assert set(first) == {"name", "title", "hash", "sha256", "filename", "config", "current"}
    assert first["filename"].endswith("random-sd15.safetensors")


def test_models_server_down_exits_3(dead_url: str) -> None:
    result = sdcli(dead_url, "models")
    assert result.exit_code == 3
    assert result.stdout == ""


def test_models_unauthorised_exits_4(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(auth=("user", "secret"))
    result = sdcli(fake, "--auth", "user:wrong", "models")
    assert result.exit_code == 4
    assert "check the user name and password" in result.stderr


# --- samplers ----------------------------------------------------------------------------------


def test_samplers_piped_lists_samplers_then_schedulers(fake_webui: FakeWebUI) -> None:
    result = sdcli(fake_webui, "samplers")
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    kinds = [line[0] for line in lines]
    assert kinds == sorted(kinds)  # all samplers, then all schedulers
    samplers = {line[1]: line[2:] for line in lines if line[0] == "sampler"}
    schedulers = {line[1]: line[2:] for line in lines if line[0] == "scheduler"}
    assert samplers["DPM++ 2M"] == ["k_dpmpp_2m", "Karras"]
    assert samplers["Euler a"][1] == ""  # no built-in default schedule
    assert schedulers["Karras"] == ["karras", ""]
    assert schedulers["SGM Uniform"] == ["sgm_uniform", "SGMUniform"]
    assert result.stderr == ""


def test_samplers_on_a_server_without_schedulers(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="a1111-1.8")
    result = sdcli(fake, "samplers")
    assert result.exit_code == 0, result.stderr
    assert "no /schedulers" in result.stderr
    names = [line.split("\t")[1] for line in result.stdout.splitlines()]
    assert "DPM++ 2M Karras" in names
    assert all(line.startswith("sampler\t") for line in result.stdout.splitlines())


def test_samplers_server_down_exits_3(dead_url: str) -> None:
    assert sdcli(dead_url, "samplers").exit_code == 3


# --- completion --------------------------------------------------------------------------------


def complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    line = " ".join(["sdcli", *words])
    result = runner.invoke(
        app,
        [],
        env={"_SDCLI_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words))},
        prog_name="sdcli",
    )
    assert result.exit_code == 0
    return [line for line in result.stdout.splitlines() if line]


def test_completes_model_names_from_the_server(fake_webui: FakeWebUI) -> None:
    assert complete("--url", fake_webui.url, "set-model", "q") == ["qteamixQ_gamma"]
    assert "anime_counterfeitV30_v30" in complete(
        "--url", fake_webui.url, "generate", "--model", ""
    )


def test_completes_sampler_names_from_the_server(fake_webui: FakeWebUI) -> None:
    assert complete("--url", fake_webui.url, "generate", "--sampler", "Euler") == [
        "Euler\\ a",  # escaped: bash inserts it as is, and it must stay one word
        "Euler",
    ]


def test_completion_is_silent_when_the_server_is_down(dead_url: str) -> None:
    assert complete("--url", dead_url, "set-model", "") == []


def test_completion_is_silent_when_credentials_are_refused(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(auth=("user", "secret"))
    assert complete("--url", fake.url, "set-model", "") == []
    assert complete("--url", fake.url, "--auth", "user:secret", "set-model", "q") == [
        "qteamixQ_gamma"
    ]


# --- the scripting contract, through a real process --------------------------------------------


def test_subprocess_set_model_stdout_is_only_the_title(fake_webui: FakeWebUI) -> None:
    done = run_sdcli("--url", fake_webui.url, "set-model", "counterfeit")
    assert done.returncode == 0, done.stderr
    assert done.stdout == COUNTERFEIT + "\n"
    assert "\x1b[" not in done.stderr
    again = run_sdcli("--url", fake_webui.url, "set-model", "counterfeit")
    assert again.stdout == COUNTERFEIT + "\n"
    assert again.stderr == f"{COUNTERFEIT} is already loaded\n"


def test_subprocess_errors_are_one_plain_line(fake_webui: FakeWebUI, dead_url: str) -> None:
    unknown = run_sdcli("--url", fake_webui.url, "set-model", "nosuchmodel")
    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1 and unknown.stderr.startswith("sdcli: error: ")
    assert "\x1b[" not in unknown.stderr
    down = run_sdcli("--url", dead_url, "models")
    assert down.returncode == 3
    assert down.stdout == ""
    assert "\x1b[" not in down.stderr and "Traceback" not in down.stderr


def complete_in_a_process(*words: str, incomplete: str) -> list[str]:
    """The real mechanism: a `sdcli` process asked the way bash's completion function asks
    (`COMP_WORDS` as bash joins the words, backslashes and all)."""
    line = " ".join(["sdcli", *words, incomplete])
    r = run_sdcli(
        env={
            "_SDCLI_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) + 1),
        }
    )
    assert r.returncode == 0, r.stderr
    return [item for item in r.stdout.splitlines() if item]


def test_a_name_with_a_space_completes_to_one_shell_word(fake_webui: FakeWebUI) -> None:
    words = ("--url", fake_webui.url, "generate", "--sampler")
    assert complete_in_a_process(*words, incomplete="Euler\\ ") == ["Euler\\ a"]
    assert complete_in_a_process(*words, incomplete="Eu") == ["Euler\\ a", "Euler"]
    # What bash then has on its command line, parsed as bash parses it:
    line = f"generate --sampler {complete_in_a_process(*words, incomplete='Euler')[0]} a cat"
    assert shlex.split(line) == ["generate", "--sampler", "Euler a", "a", "cat"]


def test_bash_itself_inserts_one_word(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    """Through bash's own completion function, as `sdcli --show-completion` installs it.

    The script is asked for from inside bash, as a user does: typer finds the shell among the
    process's ancestors, which a test runner started by a daemon does not have."""
    script = tmp_path / "complete.sh"
    script.write_text(
        'eval "$(sdcli --show-completion)" || exit 1\n'
        + "COMP_WORDS=(sdcli --url \"$URL\" generate --sampler 'Euler\\ ')\nCOMP_CWORD=5\n"
        + '_sdcli_completion sdcli\nprintf "%s\\n" "${COMPREPLY[@]}"\n',
        encoding="utf-8",
    )
    bin_dir = str(Path(sys.executable).parent)  # where the `sdcli` console script is installed
    path = bin_dir + os.pathsep + os.environ["PATH"]
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", str(script)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "URL": fake_webui.url, "PATH": path},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [reply] = r.stdout.splitlines()
    assert shlex.split(f"--sampler {reply} x") == ["--sampler", "Euler a", "x"]
