"""Limits (issue 11): input sdcli cannot send is refused before anything is sent (exit 2, one
line), reading is bounded, and a run against a server that went away ends soon, saying which
prompts were not done. End to end against the fake web UI, in process or as real processes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import error_line, generate, invoke

TXT2IMG = "/sdapi/v1/txt2img"
SAMPLERS = "/sdapi/v1/samplers"
MODELS = "/sdapi/v1/sd-models"
TINY = ("--steps", "2", "-W", "64", "-H", "64")


def run(fake: FakeWebUI, out: Path, *args: str, input: Any = None) -> Any:
    return generate(fake, out, "-q", *TINY, *args, input=input)


def sdcli_process(
    *args: str | bytes, stdin: Any = None, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """A real `sdcli` process; arguments may be bytes, as a shell passes them."""
    if "input" not in kwargs:
        kwargs["stdin"] = stdin if stdin is not None else subprocess.DEVNULL
    return subprocess.run(
        [sys.executable, "-m", "sdcli", *args],
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,  # a safety net against a hung test, not a timing assertion
        check=False,
        **kwargs,
    )


@pytest.fixture
def presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "presets"
    directory.mkdir()
    monkeypatch.setenv("SDCLI_PRESETS_PATH", str(directory))
    return directory


# --- 6: bytes that are not UTF-8 ---------------------------------------------------------------


def test_a_prompt_argument_that_is_not_utf8_exits_2(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    # Python hands the byte 0xe9 over as a lone surrogate, which UTF-8 cannot encode.
    r = sdcli_process("--url", fake_webui.url, "generate", b"caf\xe9", "-o", str(tmp_path))
    assert r.returncode == 2, r.stderr
    line = error_line(r.stderr.decode())
    assert "the prompt is not valid UTF-8 (byte 0xe9" in line
    assert fake_webui.requests == []
    assert list(tmp_path.iterdir()) == []


def test_a_negative_prompt_that_is_not_utf8_exits_2(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = sdcli_process(
        "--url", fake_webui.url, "generate", "-n", b"ugly\xff", "x", "-o", str(tmp_path)
    )
    assert r.returncode == 2, r.stderr
    assert "'negative_prompt' is not valid UTF-8 (byte 0xff" in error_line(r.stderr.decode())
    assert fake_webui.requests == []


def test_a_stdin_line_that_is_not_utf8_names_the_line_and_keeps_earlier_images(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    # A real process, so stdin is decoded the way the locale would (surrogateescape in C.UTF-8).
    r = sdcli_process(
        "--url", fake_webui.url, "generate", "-q", *TINY, "-", "-o", str(tmp_path),
        input=b"first\ncaf\xe9\nthird\n", env={"LC_ALL": "C"},
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    line = error_line(r.stderr.decode())
    assert "line 2 of stdin is not valid UTF-8 (byte 0xe9 at column 4)" in line
    assert [req.json["prompt"] for req in fake_webui.requests_to(TXT2IMG)] == ["first"]
    assert len(list(tmp_path.iterdir())) == 1


# --- 7: format specs in --name -----------------------------------------------------------------


@pytest.mark.parametrize(
    "template", ["{seed:>100000}", "{cfg_scale:.5000f}", "{date:%100000Y}", "{seed:0201}"]
)
def test_name_templates_cannot_ask_for_huge_widths(
    fake_webui: FakeWebUI, tmp_path: Path, template: str
) -> None:
    r = run(fake_webui, tmp_path / "out", "--name", template, "x")
    assert r.exit_code == 2, r.stderr
    assert "asks for a width or precision above 200" in error_line(r.stderr)
    assert fake_webui.requests == []


def test_a_name_template_width_within_a_file_name_still_works(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = run(fake_webui, tmp_path, "--seed", "42", "--name", "{seed:0>12}", "x")
    assert r.exit_code == 0, r.stderr
    assert Path(r.stdout.strip()).name == "000000000042.png"


# --- 8: lines without end ----------------------------------------------------------------------


def _limit_memory() -> None:
    """A regression must fail this test, not eat the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("source", ["--prompts-file", "stdin"])
def test_dev_zero_as_prompts_is_refused_after_one_mib(
    fake_webui: FakeWebUI, tmp_path: Path, source: str
) -> None:
    args = ["--prompts-file", "/dev/zero"] if source == "--prompts-file" else ["-"]
    where = "/dev/zero" if source == "--prompts-file" else "stdin"
    with open("/dev/zero", "rb") as zero:
        r = sdcli_process(
            "--url", fake_webui.url, "generate", *args, "-o", str(tmp_path),
            stdin=zero, preexec_fn=_limit_memory,
        )  # fmt: skip
    assert r.returncode == 2, r.stderr
    line = error_line(r.stderr.decode())
    assert f"line 1 of {where} is longer than 1 MiB" in line
    assert fake_webui.requests == []


def test_a_prompt_line_over_one_mib_is_refused(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"short\n" + b"a" * (1024 * 1024 + 1) + b"\n")
    r = run(fake_webui, tmp_path / "out", "--prompts-file", str(path))
    assert r.exit_code == 2, r.stderr
    assert f"line 2 of {path} is longer than 1 MiB" in error_line(r.stderr)
    assert [req.json["prompt"] for req in fake_webui.requests_to(TXT2IMG)] == ["short"]


def test_a_prompt_line_of_exactly_one_mib_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    prompt = "a" * (1024 * 1024)
    path.write_text(prompt + "\n", encoding="utf-8")
    r = invoke(["generate", "--dry-run", "--prompts-file", str(path)])
    assert r.exit_code == 0, r.stderr
    assert f'"prompt": "{prompt}"' in r.stdout


# --- 9: numbers JSON cannot carry ------------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "1e999", "Infinity", "-Infinity", "[1, NaN]"])
def test_set_refuses_non_finite_numbers(fake_webui: FakeWebUI, tmp_path: Path, value: str) -> None:
    r = run(fake_webui, tmp_path / "out", "--set", f"cfg_scale={value}", "x")
    assert r.exit_code == 2, r.stderr
    assert f"--set cfg_scale={value}: not a finite number" in error_line(r.stderr)
    assert fake_webui.requests == []


def test_set_still_sends_the_text_nan_when_quoted(tmp_path: Path) -> None:
    r = invoke(["generate", "--dry-run", "--set", 'sampler_name="NaN"', "x"])
    assert r.exit_code == 0, r.stderr
    assert '"sampler_name": "NaN"' in r.stdout


# --- 10: a byte order mark ---------------------------------------------------------------------


def test_a_bom_at_the_start_of_a_prompts_file_is_dropped(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"\xef\xbb\xbfa cat\r\na dog\r\n")  # as Notepad saves "UTF-8 with BOM"
    r = run(fake_webui, tmp_path / "out", "--prompts-file", str(path))
    assert r.exit_code == 0, r.stderr
    assert [req.json["prompt"] for req in fake_webui.requests_to(TXT2IMG)] == ["a cat", "a dog"]


def test_a_bom_at_the_start_of_stdin_is_dropped(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = run(fake_webui, tmp_path, "-", input=b"\xef\xbb\xbf# prompts\na cat\n")
    assert r.exit_code == 0, r.stderr
    assert [req.json["prompt"] for req in fake_webui.requests_to(TXT2IMG)] == ["a cat"]


# --- 11: an output folder others may write but not list ----------------------------------------


def run_forked_as_nobody(directory: Path, args: list[str]) -> tuple[int, str, str]:
    """`sdcli ARGS` in a forked copy of this process, in `directory`, as `nobody` when we are
    root (root ignores permission bits). Forked, because `nobody` may not be able to start
    this interpreter at all; the fork already has it, and sdcli, loaded."""
    from sdcli.cli.app import app  # noqa: F401  (loaded before the fork)

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_fd)
            os.chdir(directory)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.environ.update(SDCLI_HOME="home", SDCLI_CONFIG="home/config.toml")
            r = invoke(args)
            with os.fdopen(write_fd, "w", encoding="utf-8") as pipe:
                json.dump([r.exit_code, r.stdout, r.stderr], pipe)
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and answer, "the forked run failed (its traceback is on stderr)"
    code, stdout, stderr = json.loads(answer)
    return code, stdout, stderr


def test_an_output_folder_with_mode_733_is_accepted(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    """Saving needs write and search permission on the folder, never read permission."""
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o733)
    tmp_path.chmod(0o711)  # `nobody` may pass through, not list
    code, stdout, stderr = run_forked_as_nobody(
        tmp_path, ["--url", fake_webui.url, "generate", "-q", *TINY, "x", "-o", "out"]
    )
    assert code == 0, stderr
    saved = tmp_path / stdout.strip()
    assert saved.parent == out and saved.is_file()
    if os.geteuid() == 0:
        assert saved.stat().st_uid == 65534  # really written by `nobody`, who cannot list out


# --- 15: --retries covers the lists read before generating -------------------------------------


@pytest.mark.parametrize(
    ("path", "arm", "args"),
    [
        (SAMPLERS, {"status": 503}, ["--sampler", "Euler a"]),
        (SAMPLERS, {"mode": "close"}, ["--sampler", "Euler a"]),
        (MODELS, {"mode": "html"}, ["--model", "counterfeit"]),  # a proxy's 502 page
    ],
)
def test_retries_cover_the_lists_read_before_generating(
    fake_webui: FakeWebUI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    arm: dict[str, Any],
    args: list[str],
) -> None:
    monkeypatch.setenv("SDCLI_RETRY_BACKOFF", "0")
    fake_webui.fail(path, times=1, **arm)
    r = invoke(
        ["--url", fake_webui.url, "generate", *TINY, *args, "--retries", "1", "x",
         "-o", str(tmp_path)]
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert len(fake_webui.requests_to(path)) == 2
    assert r.stderr.count("; retry 1 in 0 s") == 1
    assert len(fake_webui.requests_to(TXT2IMG)) == 1


def test_without_retries_a_failed_list_still_stops_at_once(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.fail(SAMPLERS, status=503, times=1)
    r = run(fake_webui, tmp_path, "--sampler", "Euler a", "x")
    assert r.exit_code == 1
    assert "(503)" in error_line(r.stderr)
    assert fake_webui.requests_to(TXT2IMG) == []


# --- 16: --keep-going against a server that went away ------------------------------------------


def test_keep_going_stops_after_three_prompts_in_a_row_cannot_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setenv("SDCLI_RETRY_BACKOFF", "0")
    with socket.socket() as closed:  # bound, not listening: every connect is refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        r = invoke(
            ["--url", url, "generate", *TINY, "--keep-going", "--retries", "1", "-",
             "-o", str(tmp_path)],
            input="a\nb\nc\nd\ne\n",
        )  # fmt: skip
    assert r.exit_code == 3, r.stderr
    lines = r.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines if "failed '" in line] == [
        "failed 'a'",
        "failed 'b'",
        "failed 'c'",
    ]
    assert r.stderr.count("; retry 1 in 0 s") == 3  # each prompt had its retry; then no more
    assert [line for line in lines if "not done:" in line] == [
        f"sdcli: error: not done: {p!r}" for p in "abcde"
    ]
    assert lines[-1] == (
        "sdcli: error: stopped: 3 prompts in a row could not reach the server; "
        "5 prompts not done (3 failed, 2 not tried), 0 image(s) saved"
    )
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_at_a_terminal_keep_going_gives_up_without_waiting_for_more_prompts(
    tmp_path: Path,
) -> None:
    """Typed prompts: after the third failure in a row sdcli ends at once (no Ctrl-D needed)."""
    import socket

    import pexpect
    import pyte

    screen = pyte.Screen(200, 30)  # wide enough that no line wraps
    stream = pyte.Stream(screen)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "30"}
        child = pexpect.spawn(
            sys.executable,
            ["-m", "sdcli", "--url", url, "generate", *TINY, "--keep-going", "-",
             "-o", str(tmp_path)],
            env=env, dimensions=(30, 200), encoding="utf-8",
        )  # fmt: skip
        try:
            for prompt in ("a cat", "a dog", "a bird"):
                child.sendline(prompt)
            child.expect(pexpect.EOF, timeout=60)  # it ends by itself: stdin is still open
            stream.feed(child.before or "")
        finally:
            child.close(force=True)
    lines = [line.rstrip() for line in screen.display if line.strip()]
    assert child.exitstatus == 3, lines
    assert "sdcli: error: not done: 'a bird'" in lines
    assert lines[-1] == (
        "sdcli: error: stopped: 3 prompts in a row could not reach the server; "
        "3 prompts not done (3 failed, the rest not read), 0 image(s) saved"
    )
    assert list(tmp_path.iterdir()) == []


def test_keep_going_counts_only_failures_in_a_row(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    # Two dropped connections, a 500 (the server is there), then three dropped: stop after f.
    fake_webui.fail(TXT2IMG, mode="close", times=2)
    fake_webui.fail(TXT2IMG, status=500, times=1)
    fake_webui.fail(TXT2IMG, mode="close", times=3)
    r = run(fake_webui, tmp_path, "--keep-going", "-", input="a\nb\nc\nd\ne\nf\ng\n")
    assert r.exit_code == 3, r.stderr
    assert [req.json["prompt"] for req in fake_webui.requests_to(TXT2IMG)] == list("abcdef")
    assert "sdcli: error: failed 'c': the server failed (500)" in r.stderr
    assert "sdcli: error: not done: 'g'" in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.endswith("; 7 prompts not done (6 failed, 1 not tried), 0 image(s) saved")


def test_keep_going_against_a_live_server_still_ends_with_exit_1(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.fail(TXT2IMG, mode="close", times=2)
    r = run(fake_webui, tmp_path, "--keep-going", "-", input="a\nb\nc\n")
    assert r.exit_code == 1, r.stderr
    assert r.stderr.splitlines()[-1] == "sdcli: error: 2 prompts failed, 1 image(s) saved"
    assert "not done" not in r.stderr


# --- 17: what the web UI accepts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--seed", "100000000000000000000"], "--seed must be between -1 and 4294967295"),
        (["--seed", "4294967296"], "--seed must be between -1 and 4294967295"),
        (["--steps", "151"], "--steps must be between 1 and 150, got 151 (the web UI's own"),
        (["--cfg", "30.5"], "--cfg must be between 0 and 30"),
        (["--count", "101"], "--count must be between 1 and 100"),
        (["-b", "9"], "--batch-size must be between 1 and 8"),
        (["--height", "2056"], "--height must be between 64 and 2048"),
        (["--set", "seed=1e20"], "'seed' must be between -1 and 4294967295"),
        (["--set", "subseed=4294967296"], "'subseed' must be between -1 and 4294967295"),
        (["--set", "seed=7.5"], "'seed' must be a whole number, got 7.5"),
        (["--seed", "4294967295", "-b", "2"], "seed 4294967295 with 2 images"),
        (["--seed", "4294967291", "-c", "3", "-b", "2"], "would go past the largest seed"),
    ],
)
def test_values_beyond_what_the_web_ui_takes_exit_2(
    fake_webui: FakeWebUI, tmp_path: Path, args: list[str], fragment: str
) -> None:
    r = run(fake_webui, tmp_path / "out", *args, "x")
    assert r.exit_code == 2, r.stderr
    assert fragment in error_line(r.stderr)
    assert fake_webui.requests == []
    assert not (tmp_path / "out").exists()


def test_the_largest_values_are_sent(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = invoke(
        ["--url", fake_webui.url, "generate", "--dry-run", "--seed", "4294967288",
         "--steps", "150", "--cfg", "30", "-b", "8", "--count", "1", "x"]
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert '"seed": 4294967288' in r.stdout and '"steps": 150' in r.stdout
    r = invoke(["generate", "--dry-run", "--seed", "4294967295", "x"])
    assert r.exit_code == 0, r.stderr


def test_set_may_go_past_the_sliders(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    # The web UI's API takes more steps than its slider: --set is the last word.
    r = run(fake_webui, tmp_path, "--set", "steps=151", "x")
    assert r.exit_code == 0, r.stderr
    assert fake_webui.requests_to(TXT2IMG)[0].json["steps"] == 151


def test_a_seed_in_a_presets_params_table_is_bounded_too(
    fake_webui: FakeWebUI, presets: Path, tmp_path: Path
) -> None:
    (presets / "big.toml").write_text("[params]\nseed = 1e20\n", encoding="utf-8")
    r = run(fake_webui, tmp_path, "-p", "big", "x")
    assert r.exit_code == 2, r.stderr
    assert "request field 'seed' must be between -1 and 4294967295" in error_line(r.stderr)
    assert fake_webui.requests == []


# --- NUL: the PNG text chunk's separator -------------------------------------------------------


def test_a_nul_in_a_stdin_prompt_is_refused_before_sending(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = run(fake_webui, tmp_path, "-", input=b"a\x00b\n")
    assert r.exit_code == 2, r.stderr
    assert "line 1 of stdin holds a NUL character" in error_line(r.stderr)
    assert fake_webui.requests == []


def test_a_nul_from_set_or_a_preset_is_refused_before_sending(
    fake_webui: FakeWebUI, presets: Path, tmp_path: Path
) -> None:
    (presets / "nul.toml").write_text('negative_prompt = "a\\u0000b"\n', encoding="utf-8")
    r = run(fake_webui, tmp_path, "-p", "nul", "x")
    assert r.exit_code == 2, r.stderr
    assert "request field 'negative_prompt' holds a NUL character" in error_line(r.stderr)
    r = run(fake_webui, tmp_path, "--set", 'prompt="a\\u0000"', "x")
    assert r.exit_code == 2, r.stderr
    assert "request field 'prompt' holds a NUL character" in error_line(r.stderr)
    assert fake_webui.requests == []
