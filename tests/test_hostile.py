"""The second fault matrix: hostile servers and signals (README "When things go wrong").

Where the fake's own failure hooks cannot misbehave the way a hostile server does (an answer
trickled a byte at a time, header lines that never end, a redirect), a proxy in front of the
fake breaks one path in one way (tests/hostile_proxy.py).
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sdcli.pngmeta import get_parameters, with_parameters
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import SdcliProcess, error_line, invoke, run_sdcli
from hostile_proxy import HostileProxy, endless_headers, redirect, trickle
from terminal_helpers import run_on_terminal
from test_faults import TINY, all_files, png_bytes

MakeFake = Callable[..., FakeWebUI]
TXT2IMG = "/sdapi/v1/txt2img"
SAMPLERS = "/sdapi/v1/samplers"
INTERRUPT = "/sdapi/v1/interrupt"
EVIL = "\x1b]0;title\x07\x1b[2J\nsdcli: error: fake second line"
SECRET = "S3cret-Pa55_w0rd"


@pytest.fixture
def proxy(fake_webui: FakeWebUI) -> Iterator[HostileProxy]:
    with HostileProxy(fake_webui.url) as hostile:
        yield hostile


# --- 1. escape sequences from the server or a file are shown, never obeyed -------------------


def evil_500(fake: FakeWebUI) -> None:
    body = {"error": "RuntimeError", "detail": "", "body": "", "errors": "boom " + EVIL}
    fake.fail(TXT2IMG, status=500, body=body)


def test_escape_codes_in_a_server_error_are_escaped_on_one_line(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    evil_500(fake_webui)
    r = run_sdcli("--url", fake_webui.url, "generate", "-q", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr == (
        "sdcli: error: the server failed (500): RuntimeError: boom "
        "\\x1b]0;title\\x07\\x1b[2J\\nsdcli: error: fake second line\n"
    )


def test_escape_codes_in_a_server_error_do_not_reach_the_terminal(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    evil_500(fake_webui)
    args = ("--url", fake_webui.url, "generate", *TINY, "x", "-o", str(tmp_path))
    final = run_on_terminal(*args, columns=160, rows=40)  # stdout and stderr on one screen
    assert final.exit_code == 1
    assert final.title == ""  # the window title was not set
    # One line, nothing forged, and its start still there: ESC[2J would have erased it.
    [line] = [line for line in final.lines if "sdcli:" in line]
    assert line.startswith("sdcli: error: the server failed (500): RuntimeError: boom \\x1b]0;")
    assert line.endswith("\\nsdcli: error: fake second line")


def evil_png(fake: FakeWebUI, path: Path) -> str:
    fake.png_parameters = False
    text = f"a cat {EVIL}\nNegative prompt: [bold red]x[/] \x9b2J\nSteps: 2, Seed: 1, Model: {EVIL}"
    path.write_bytes(with_parameters(png_bytes(fake, steps=1, width=64, height=64), text))
    return text


def test_info_on_an_image_with_escape_codes_shows_them_escaped_on_a_terminal(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    image = tmp_path / "evil.png"
    evil_png(fake_webui, image)
    final = run_on_terminal("info", str(image), columns=200, rows=40)
    assert final.exit_code == 0
    assert final.title == ""
    lines = [line for line in final.lines if line]
    assert not [line for line in lines if line.startswith("sdcli: error: fake")], lines
    assert str(image) in lines[0]  # the table's title, not cleared away by ESC[2J
    [prompt] = [line for line in lines if "Prompt" in line and "Negative" not in line]
    assert "a cat \\x1b]0;title\\x07\\x1b[2J\\nsdcli: error: fake second line" in prompt
    [negative] = [line for line in lines if "Negative prompt" in line]
    assert "[bold red]x[/] \\x9b2J" in negative  # markup in data is shown, not interpreted


def test_info_on_an_image_with_escape_codes_piped_and_as_json(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    image = tmp_path / "evil.png"
    text = evil_png(fake_webui, image)
    r = run_sdcli("info", str(image))
    assert r.returncode == 0
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert r.stdout.splitlines()[0] == (
        "Prompt\ta cat \\x1b]0;title\\x07\\x1b[2J\\nsdcli: error: fake second line"
    )
    r = run_sdcli("info", "--json", str(image))
    assert json.loads(r.stdout)["infotext"] == text  # --json stays exact...
    assert not set(r.stdout) & {"\x1b", "\x07", "\x9b"}  # ...in escapes a terminal won't obey


# --- 2. --timeout bounds the whole answer, not the wait between two bytes -------------------


@pytest.mark.parametrize(
    ("path", "command"),
    [(SAMPLERS, ["samplers"]), (TXT2IMG, ["generate", *TINY, "x"])],
)
def test_a_trickling_server_cannot_hold_sdcli_past_its_timeout(
    proxy: HostileProxy, tmp_path: Path, path: str, command: list[str]
) -> None:
    # One byte every 0.05 s never leaves a 1 s gap between reads; the answer takes minutes.
    proxy.break_path(path, trickle(interval=0.05, limit=60))
    r = run_sdcli("--url", proxy.url, "--timeout", "1", *command, cwd=tmp_path)
    assert r.returncode == 3
    method = "POST" if path == TXT2IMG else "GET"
    assert f"did not answer {method} {path} within 1 s" in error_line(r.stderr)
    assert proxy.hits == [path]
    assert all_files(tmp_path) == []


# --- 3. timeouts are checked before anything is sent ------------------------------------------


@pytest.mark.parametrize("value", ["1e10", "nan", "inf", "-1", "0", "1e999"])
def test_a_timeout_that_cannot_be_honoured_exits_2_before_sending(
    fake_webui: FakeWebUI, tmp_path: Path, value: str
) -> None:
    r = invoke(
        ["--url", fake_webui.url, "--timeout", value, "generate", *TINY, "x", "-o", str(tmp_path)]
    )
    assert r.exit_code == 2
    assert "--timeout must be a number of seconds above 0 and at most 604800" in error_line(
        r.stderr
    )
    assert fake_webui.requests == []
    assert all_files(tmp_path) == []


@pytest.mark.parametrize(
    ("env", "config", "where"),
    [
        ({"SDCLI_TIMEOUT": "nan"}, "", "SDCLI_TIMEOUT"),
        ({}, "timeout = 1e10\n", "config key 'timeout'"),
        ({}, "timeout = inf\n", "config key 'timeout'"),
        ({}, "connect_timeout = 0\n", "config key 'connect_timeout'"),
        ({}, "connect_timeout = nan\n", "config key 'connect_timeout'"),
    ],
)
def test_timeouts_from_the_environment_and_config_file_are_checked_too(
    fake_webui: FakeWebUI,
    tmp_path: Path,
    isolated_sdcli_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    config: str,
    where: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (isolated_sdcli_home / "config.toml").write_text(config, encoding="utf-8")
    r = invoke(["--url", fake_webui.url, "generate", *TINY, "x", "-o", str(tmp_path)])
    assert r.exit_code == 2
    assert f"{where} must be a number of seconds above 0" in error_line(r.stderr)
    assert fake_webui.requests == []


def test_timeout_none_waits_as_long_as_it_takes(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = invoke(
        ["--url", fake_webui.url, "--timeout", "none", "generate", *TINY, "x", "-o", str(tmp_path)]
    )
    assert r.exit_code == 0, r.stderr
    assert len(all_files(tmp_path)) == 1


# --- 4. SIGTERM and SIGHUP take Ctrl-C's path ---------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_interrupt_the_job_keep_the_partial_image_and_exit_128_plus_n(
    fake_webui: FakeWebUI,
    spawn_sdcli: Callable[..., SdcliProcess],
    tmp_path: Path,
    signum: signal.Signals,
    code: int,
) -> None:
    fake_webui.pause_at_step(3)
    p = spawn_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "--steps", "20", "x",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert fake_webui.wait_paused(30)
    p.proc.send_signal(signum)
    returncode, stdout, stderr = p.finish()
    fake_webui.resume()  # already released by the interrupt; harmless
    assert returncode == code
    assert f"interrupted by {signum.name}; kept 1 image(s)" in error_line(stderr)
    assert len(fake_webui.requests_to(INTERRUPT)) == 1
    [path] = [Path(line) for line in stdout.splitlines()]
    assert all_files(tmp_path) == [path.name]  # no temp file left
    text = get_parameters(path.read_bytes())
    assert text is not None and text.startswith("x\n")


def test_an_ignored_sighup_stays_ignored(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    """`nohup sdcli …` must outlive the terminal it was started from."""
    fake_webui.pause_at_step(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdcli", "--url", fake_webui.url, "generate", "-q", *TINY, "x",
         "-o", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    try:
        assert fake_webui.wait_paused(30)
        proc.send_signal(signal.SIGHUP)
        fake_webui.resume()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert fake_webui.requests_to(INTERRUPT) == []
    assert len(stdout.splitlines()) == 1


# SIGTERM arrives while the second image of a batch is being written: sent by the process to
# itself from os.fsync, so it lands at that exact point of the write every time.
_SIGTERM_IN_SECOND_FSYNC = """
import os, signal, sys
real_fsync, calls = os.fsync, []
def fsync(fd):
    calls.append(fd)
    real_fsync(fd)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
os.fsync = fsync
sys.argv = ["sdcli", *sys.argv[1:]]
from sdcli.__main__ import main
main()
"""


def test_sigterm_while_writing_a_batch_keeps_whole_files_only_and_prints_their_paths(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = subprocess.run(
        [sys.executable, "-c", _SIGTERM_IN_SECOND_FSYNC, "--url", fake_webui.url, "generate",
         "-q", *TINY, "-b", "3", "x", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert r.returncode == 143
    assert error_line(r.stderr) == "sdcli: error: interrupted by SIGTERM"
    [path] = [Path(line) for line in r.stdout.splitlines()]  # the one image written whole
    assert all_files(tmp_path) == [path.name]  # the second one's temp file is gone


# --- 5. an `info` that is not JSON does not cost the image ------------------------------------


def test_a_malformed_info_keeps_the_image_as_sent_and_warns(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(png_parameters=False)
    png = png_bytes(fake, steps=1, width=64, height=64)
    body = {"images": [base64.b64encode(png).decode()], "parameters": {}, "info": '{"seed": 1,'}
    fake.fail(TXT2IMG, status=200, body=body)
    r = run_sdcli("--url", fake.url, "generate", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    [path] = [Path(line) for line in r.stdout.splitlines()]
    assert path.read_bytes() == png  # nothing spliced in: there was nothing sound to splice
    warnings = [line for line in r.stderr.splitlines() if line.startswith("sdcli: warning:")]
    assert warnings == [
        "sdcli: warning: the server's `info` field is not valid JSON: images saved without "
        "their seed and generation parameters"
    ]
    assert all_files(tmp_path) == [path.name]


# --- 12, 13. plain-text tracebacks and huge messages ------------------------------------------

TRACEBACK = b"""Traceback (most recent call last):
  File "/app/modules/api/api.py", line 480, in text2imgapi
    processed = process_images(p)
  File "/app/modules/processing.py", line 847, in process_images
    res = process_images_inner(p)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
"""


def test_a_plain_text_traceback_shows_its_exception_line(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.fail(TXT2IMG, status=500, body=TRACEBACK)
    r = run_sdcli("--url", fake_webui.url, "generate", "-q", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 1
    assert error_line(r.stderr) == (
        "sdcli: error: the server failed (500): torch.OutOfMemoryError: CUDA out of memory. "
        "Tried to allocate 2.00 GiB"
    )


def test_a_huge_server_message_is_cut_and_debug_shows_it_whole(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    message = "x" * 200_000 + "THE-END"
    body = {"error": "RuntimeError", "detail": "", "body": "", "errors": message}
    fake_webui.fail(TXT2IMG, status=500, body=body, times=2)
    r = run_sdcli("--url", fake_webui.url, "generate", "-q", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 1
    line = error_line(r.stderr)
    assert line.startswith("sdcli: error: the server failed (500): RuntimeError: xxx")
    assert line.endswith("x…")
    assert len(line) < 400
    r = run_sdcli("--url", fake_webui.url, "--debug", "generate", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 1
    assert f"RuntimeError: {message}" in r.stderr  # in the debug line
    [line] = [line for line in r.stderr.splitlines() if line.startswith("sdcli: error:")]
    assert len(line) < 400


# --- 14. header lines that never end ----------------------------------------------------------


def test_header_lines_then_a_closed_connection_is_a_connection_problem(
    proxy: HostileProxy,
) -> None:
    proxy.break_path(SAMPLERS, endless_headers(lines=50))
    r = run_sdcli("--url", proxy.url, "samplers")
    assert r.returncode == 3
    assert f"closed before GET {SAMPLERS} was answered" in error_line(r.stderr)


# --- 18. the URL that refused, and a URL that is not the server's root ------------------------


def test_a_401_after_a_redirect_names_the_server_that_answered(
    make_fake_webui: MakeFake,
) -> None:
    guarded = make_fake_webui(auth=("u", SECRET))
    front = make_fake_webui()
    with HostileProxy(front.url) as hostile:
        target = guarded.url.replace("http://", "http://u:wrong-pass@") + SAMPLERS
        hostile.break_path(SAMPLERS, redirect(target))
        r = run_sdcli("--url", hostile.url, "--auth", f"u:{SECRET}", "samplers")
        assert r.returncode == 4
        line = error_line(r.stderr)
        assert line.startswith(f"sdcli: error: {guarded.url}{SAMPLERS} refused access (401")
        assert f"{hostile.url}{SAMPLERS} redirected there" in line
        assert SECRET not in r.stderr + r.stdout
        assert "wrong-pass" not in r.stderr + r.stdout


@pytest.mark.parametrize("suffix", ["/sdapi/v1", "/sdapi/v1/", "/sdapi/v1/txt2img"])
def test_a_url_that_ends_in_the_api_path_exits_2_naming_the_root(
    fake_webui: FakeWebUI, tmp_path: Path, suffix: str
) -> None:
    r = run_sdcli("--url", fake_webui.url + suffix, "generate", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 2
    line = error_line(r.stderr)
    assert "must be the web UI's root, not its API path" in line
    assert f"use {fake_webui.url};" in line
    assert fake_webui.requests == []
