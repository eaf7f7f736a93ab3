"""The fault matrix, end to end: whatever goes wrong, one line on stderr, the documented exit
code, every image received kept and no half-written file (README "When things go wrong").

Most tests run a real `sdcli` process against the fake web UI over loopback. Where a test must
change the server between two prompts, it feeds `sdcli generate -` one line at a time: the next
prompt is only read once the previous one is finished, so no sleeps are needed to line things up.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from sdcli.pngmeta import get_parameters, sniff_image_format
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import SDCLI, SdcliProcess, error_line, invoke, run_sdcli, run_side_by_side

MakeFake = Callable[..., FakeWebUI]

TXT2IMG = "/sdapi/v1/txt2img"
INTERRUPT = "/sdapi/v1/interrupt"
TINY = ("--steps", "2", "-W", "64", "-H", "64")  # no sampler: no name lookups, txt2img only
SECRET = "S3cret-Pa55_w0rd"
NOT_FOUND = {"detail": "Not Found"}
DETAIL_LIST = {
    "detail": [
        {"loc": ["body", "steps"], "msg": "value is not a valid integer", "type": "type_error"}
    ]
}


# --- helpers ---------------------------------------------------------------------------------


def all_files(directory: Path) -> list[str]:
    """Every entry below `directory`, hidden ones too: temp files start with a dot."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def generate(url: str, out: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run_sdcli("--url", url, "generate", "-q", *TINY, *args, "-o", str(out), **kwargs)


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def generate_here(url: str, out: Path, *args: str, input: str | None = None) -> Ran:
    """The same run in process (CliRunner): for rows where a real process adds nothing."""
    r = invoke(["--url", url, "generate", "-q", *TINY, *args, "-o", str(out)], input=input)
    return Ran(r.exit_code, r.stdout, r.stderr)


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A loopback listener that never accepts, its backlog already full: a connect gets no answer.

    With listen(0) Linux queues one connection; once one sits there, new SYNs are dropped, so
    the client's connect waits exactly like one to a host that is down.
    """
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port


def png_bytes(fake: FakeWebUI, **body: Any) -> bytes:
    answer = requests.post(fake.url + TXT2IMG, json={"prompt": "x", **body}, timeout=30).json()
    return base64.b64decode(answer["images"][0])


# --- the server cannot be reached --------------------------------------------------------------


def test_unreachable_server_exits_3(dead_url: str, tmp_path: Path) -> None:
    url = dead_url
    r = generate(url, tmp_path / "out", "x")
    assert r.returncode == 3
    assert f"cannot reach {url}" in error_line(r.stderr)
    assert r.stdout == ""
    assert all_files(tmp_path) == []


def test_dns_failure_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `.invalid` never resolves (RFC 6761), but glibc would still ask the configured name
    # server: the resolver answers here, in process, so no packet leaves the machine.
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    r = invoke(
        ["--url", "http://sdcli-test.invalid:7860", "generate", *TINY, "x", "-o", str(tmp_path)]
    )
    assert r.exit_code == 3
    assert "host name 'sdcli-test.invalid' does not resolve" in error_line(r.stderr)
    assert all_files(tmp_path) == []


def test_connect_timeout_exits_3(
    full_backlog_port: int, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    (isolated_sdcli_home / "config.toml").write_text("connect_timeout = 0.5\n", encoding="utf-8")
    r = generate(f"http://127.0.0.1:{full_backlog_port}", tmp_path / "out", "x")
    assert r.returncode == 3
    assert "no answer to connect within 0.5 s" in error_line(r.stderr)
    assert all_files(tmp_path) == []


def test_read_timeout_during_a_long_job_exits_3_keeps_earlier_images_and_never_resends(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    p = spawn_sdcli(
        "--url", fake_webui.url, "--timeout", "0.5", "generate", "-q", *TINY,
        "--retries", "2", "-", "-o", str(out),
    )  # fmt: skip
    p.send("first")
    first = Path(p.read_stdout())
    fake_webui.pause_at_step(1)
    code, stdout, stderr = p.finish("second", "third")
    assert fake_webui.wait_paused(0)  # the job is still running on the server...
    fake_webui.resume()
    assert fake_webui.wait_idle()
    assert code == 3
    assert f"did not answer POST {TXT2IMG} within 0.5 s" in error_line(stderr)
    assert "--timeout" in stderr
    assert stdout == ""
    # ...so it is never sent twice, and the run stops there: "third" is not sent either.
    assert [r.json["prompt"] for r in fake_webui.requests_to(TXT2IMG)] == ["first", "second"]
    assert all_files(out) == [first.name]


# --- the server refuses ------------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, "wrong-" + SECRET])
def test_missing_or_wrong_credentials_exit_4_without_showing_the_password(
    make_fake_webui: MakeFake, tmp_path: Path, password: str | None
) -> None:
    fake = make_fake_webui(auth=("u", SECRET))
    auth = ["--auth", f"u:{password}"] if password else []
    r = run_sdcli("--url", fake.url, *auth, "generate", *TINY, "x", "-o", str(tmp_path))
    assert r.returncode == 4
    line = error_line(r.stderr)
    assert "refused access (401" in line
    assert ("check the user name and password" if password else "needs --auth") in line
    assert SECRET not in r.stderr + r.stdout
    assert all_files(tmp_path) == []


def test_403_is_an_auth_failure(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.fail(TXT2IMG, status=403)
    r = generate_here(fake_webui.url, tmp_path, "x")
    assert r.returncode == 4
    assert "refused access (403" in error_line(r.stderr)
    assert all_files(tmp_path) == []


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("404 api off", "start the web UI with --api"),
        ("422 detail list", "rejected the request (422): steps: value is not a valid integer"),
        ("500 generic", "the server failed (500): RuntimeError: injected failure"),
        ("502 html page", "answered 502 Bad Gateway with an HTML page instead of JSON"),
        ("truncated json", "answered 200 with a body that is not valid JSON"),
        ("image not base64", "image 1 in the server's answer is not valid base64"),
        ("empty images", "the server answered without any image"),
    ],
)
def test_server_errors_exit_1_with_one_line_and_no_file(
    fake_webui: FakeWebUI, tmp_path: Path, kind: str, fragment: str
) -> None:
    arm: dict[str, dict[str, Any]] = {
        "404 api off": {"status": 404, "body": NOT_FOUND},
        "422 detail list": {"status": 422, "body": DETAIL_LIST},
        "500 generic": {"status": 500},
        "502 html page": {"mode": "html"},
        "truncated json": {"mode": "malformed"},
        "image not base64": {"mode": "bad_image"},
        "empty images": {"mode": "empty_images"},
    }
    fake_webui.fail(TXT2IMG, **arm[kind])
    r = generate_here(fake_webui.url, tmp_path, "x")
    assert r.returncode == 1
    assert fragment in error_line(r.stderr)
    assert r.stderr.count("\n") == 1  # -q: the error is all there is
    assert r.stdout == ""
    assert all_files(tmp_path) == []


def test_one_undecodable_image_does_not_cost_the_others(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.fail(TXT2IMG, mode="bad_image")  # spoils images[0] of a batch of 3
    r = generate_here(fake_webui.url, tmp_path, "-b", "3", "--seed", "5", "--json", "x")
    assert r.returncode == 1
    assert "image 1 in the server's answer is not valid base64" in error_line(r.stderr)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["seed"] for row in rows] == [6, 7]
    assert all_files(tmp_path) == sorted(Path(row["path"]).name for row in rows)


def test_a_jpeg_instead_of_a_png_is_kept_as_jpg(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.fail(TXT2IMG, mode="not_png")
    r = generate_here(fake_webui.url, tmp_path, "x")
    assert r.returncode == 0, r.stderr
    [path] = [Path(line) for line in r.stdout.splitlines()]
    assert path.suffix == ".jpg"
    assert sniff_image_format(path.read_bytes()) == "jpeg"
    assert all_files(tmp_path) == [path.name]


def test_bytes_that_are_no_image_are_refused_and_the_rest_kept(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    good = base64.b64encode(png_bytes(fake_webui, steps=1, width=64, height=64)).decode()
    junk = base64.b64encode(b"<html>not an image</html>").decode()
    info = {"all_seeds": [1, 2], "infotexts": ["x\nSeed: 1", "x\nSeed: 2"], "prompt": "x"}
    body = {"images": [junk, good], "parameters": {}, "info": json.dumps(info)}
    fake_webui.fail(TXT2IMG, status=200, body=body)
    r = generate_here(fake_webui.url, tmp_path, "x")
    assert r.returncode == 1
    assert "image 1 from the server is not an image file" in error_line(r.stderr)
    [path] = [Path(line) for line in r.stdout.splitlines()]
    assert all_files(tmp_path) == [path.name]
    assert path.read_bytes() == base64.b64decode(good)  # the server's bytes, untouched


# --- the server goes away --------------------------------------------------------------------


def test_connection_dropped_exits_3_keeps_earlier_images(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    p = spawn_sdcli("--url", fake_webui.url, "generate", "-q", *TINY, "-", "-o", str(out))
    p.send("first")
    first = Path(p.read_stdout())
    fake_webui.fail(TXT2IMG, mode="close")
    code, stdout, stderr = p.finish("second", "third")
    assert code == 3
    assert f"closed before POST {TXT2IMG} was answered" in error_line(stderr)
    assert stdout == ""
    assert all_files(out) == [first.name]
    assert len(fake_webui.requests_to(TXT2IMG)) == 2  # stopped at the first failure


def test_server_dying_in_the_middle_of_a_job(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    fake = make_fake_webui()
    out = tmp_path / "out"
    p = spawn_sdcli("--url", fake.url, "generate", "-q", *TINY, "-", "-o", str(out))
    p.send("first")
    first = Path(p.read_stdout())
    fake.pause_at_step(1)
    p.send("second")
    assert fake.wait_paused(30)
    fake.stop()  # the web UI process dies with the job half done: every connection closes
    code, stdout, stderr = p.finish()
    assert code == 3
    assert "closed before" in error_line(stderr) or "broke while reading" in stderr
    assert stdout == ""
    assert all_files(out) == [first.name]


# --- Ctrl-C ----------------------------------------------------------------------------------


def test_ctrl_c_interrupts_the_server_keeps_the_partial_image_and_exits_130(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    fake_webui.pause_at_step(3)
    p = spawn_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "--steps", "20", "x",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert fake_webui.wait_paused(30)
    p.proc.send_signal(signal.SIGINT)
    code, stdout, stderr = p.finish()
    fake_webui.resume()  # already released by the interrupt; harmless
    assert code == 130
    assert "interrupted; kept 1 image(s)" in error_line(stderr)
    assert len(fake_webui.requests_to(INTERRUPT)) == 1
    [path] = [Path(line) for line in stdout.splitlines()]
    assert all_files(tmp_path) == [path.name]
    text = get_parameters(path.read_bytes())
    assert text is not None and text.startswith("x\n")


def test_ctrl_c_on_sdnext_keeps_its_jpeg_and_warns_of_its_other_size(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="sdnext")
    fake.pause_at_step(2)
    p = spawn_sdcli("--url", fake.url, "generate", *TINY, "--steps", "6", "x", "-o", str(tmp_path))
    assert fake.wait_paused(30)
    p.proc.send_signal(signal.SIGINT)
    code, stdout, stderr = p.finish()
    assert code == 130  # its /interrupt answers 204 with no body
    assert "interrupted; kept 1 image(s)" in error_line(stderr)
    [path] = [Path(line) for line in stdout.splitlines()]
    assert path.suffix == ".jpg" and sniff_image_format(path.read_bytes()) == "jpeg"
    # captured: an interrupted 64x64 job came back as a 512x512 image
    assert "sdcli: warning: the server made a 512x512 image, not the 64x64 asked for" in stderr


def test_a_ctrl_c_while_getting_ready_is_raised_once_ready() -> None:
    """The Runner gets its sinks ready (threads started, modules loaded) while the server
    works, which is when Ctrl-C is likely: it is taken as that work ends, never in its middle
    (a writer thread half started could not be joined)."""
    from sdcli.errors import interruptions_held

    done: list[str] = []
    with pytest.raises(KeyboardInterrupt), interruptions_held():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_inside_a_held_block_is_raised_at_once() -> None:
    """A held block can wait on a terminal that stopped reading (a picture's write): the first
    Ctrl-C waits for its end, the second quits there and then."""
    from sdcli.errors import interruptions_held

    done: list[str] = []
    with pytest.raises(KeyboardInterrupt), interruptions_held():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("after the first")
        os.kill(os.getpid(), signal.SIGINT)
        done.append("after the second")
    assert done == ["after the first"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_ctrl_c_quits_at_once_with_130(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    fake_webui.fail(TXT2IMG, mode="hang")  # a server that never answers, even after /interrupt
    p = spawn_sdcli("--url", fake_webui.url, "generate", *TINY, "x", "-o", str(tmp_path))
    assert fake_webui.wait_for_request(TXT2IMG, timeout=30)
    p.proc.send_signal(signal.SIGINT)
    assert p.read_stderr().startswith("interrupting: waiting for the images made so far")
    assert fake_webui.wait_for_request(INTERRUPT, timeout=30)
    p.proc.send_signal(signal.SIGINT)
    code, stdout, stderr = p.finish()
    fake_webui.release_hangs()
    assert code == 130
    # Not "interrupted before the server returned any image": that is what the end of the
    # grace period would say. This is the second Ctrl-C cutting the wait short.
    assert error_line(stderr) == "sdcli: error: interrupted"
    assert stdout == ""
    assert all_files(tmp_path) == []


# --- local trouble: the output, stdout, stdin ------------------------------------------------


def _obey_permission_bits() -> Callable[[], None] | None:
    """A preexec_fn that makes root obey file modes (drops CAP_DAC_*, CAP_FOWNER); else None."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    cap_dac_override, cap_dac_read_search, cap_fowner = 1, 2, 3

    def drop() -> None:
        for cap in (cap_dac_override, cap_dac_read_search, cap_fowner):
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return drop


def test_output_dir_not_writable_exits_2_before_generating(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        r = subprocess.run(
            [*SDCLI, "--url", fake_webui.url, "generate", *TINY, "x", "-o", str(read_only)],
            capture_output=True,
            text=True,
            preexec_fn=_obey_permission_bits(),  # only prctl() runs between fork and exec
            timeout=120,
            check=False,
        )
    finally:
        read_only.chmod(0o755)
    assert r.returncode == 2
    assert f"permission denied writing {read_only}" in error_line(r.stderr)
    assert fake_webui.requests_to(TXT2IMG) == []
    assert all_files(read_only) == []


def test_output_dir_that_is_a_file_exits_2_before_generating(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"keep me")
    r = generate_here(fake_webui.url, target, "x")
    assert r.returncode == 2
    assert "it is a file, not a directory" in error_line(r.stderr)
    assert target.read_bytes() == b"keep me"
    assert fake_webui.requests == []


def test_disk_full_exits_2_and_leaves_no_partial_file(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    # RLIMIT_FSIZE (ulimit -f, in KiB) makes write() fail with EFBIG past 1 KiB, like a full
    # disk would with ENOSPC; SIGXFSZ is ignored so the write fails instead of killing us.
    script = 'trap "" XFSZ; ulimit -f 1; exec "$@"'
    r = subprocess.run(
        [
            "bash",
            "-c",
            script,
            "bash",
            *SDCLI,
            "--url",
            fake_webui.url,
            "generate",
            *TINY,
            "x",
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2
    assert f"file too large to write {tmp_path}" in error_line(r.stderr)
    assert len(fake_webui.requests_to(TXT2IMG)) == 1  # the image was made, and could not be kept
    assert r.stdout == ""
    assert all_files(tmp_path) == []  # neither the image nor a temp file


def test_parallel_processes_with_one_name_never_overwrite_or_lose_an_image(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    procs = [
        subprocess.Popen(
            [
                *SDCLI,
                "--url",
                fake_webui.url,
                "generate",
                "-q",
                *TINY,
                "-b",
                "2",
                "--seed",
                str(100 * k),
                "--name",
                "same",
                "x",
                "-o",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(1, 5)
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], results
    paths = [Path(line) for out, _ in results for line in out.splitlines()]
    assert len(paths) == len(set(paths)) == 8
    assert all_files(tmp_path) == sorted(p.name for p in paths)
    assert {p.name for p in paths} == {"same.png"} | {f"same-{n}.png" for n in range(1, 8)}
    seeds = []
    for path in paths:
        text = get_parameters(path.read_bytes())
        assert text is not None
        seeds.append(int(text.split("Seed: ")[1].split(",")[0]))
    assert sorted(seeds) == [100, 101, 200, 201, 300, 301, 400, 401]


def test_head_1_in_a_shell_pipeline_gives_no_traceback(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    command = (
        f"printf 'a\\nb\\nc\\nd\\n' | {sys.executable} -m sdcli --url {fake_webui.url} "
        f"generate -q {' '.join(TINY)} -b 2 - -o {tmp_path} | head -1"
    )
    r = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0  # head's status: pipefail is off
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
    assert r.stderr == ""
    [line] = r.stdout.splitlines()
    assert Path(line).parent == tmp_path and Path(line).is_file()
    assert not [name for name in all_files(tmp_path) if name.startswith(".")]


def test_reader_going_away_exits_141_with_every_received_image_on_disk(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    p = spawn_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "-b", "3", "-", "-o", str(tmp_path)
    )
    p.send("first")
    for _ in range(3):  # the whole first batch, so the next write is surely the next batch's
        p.read_stdout()
    p.proc.stdout.close()  # type: ignore[union-attr]  # what `head` does once it has enough
    p.send("second")
    p.proc.stdin.close()  # type: ignore[union-attr]
    stderr = p.proc.stderr.read()  # type: ignore[union-attr]
    assert p.proc.wait(timeout=120) == 141
    assert stderr == ""
    # The whole second batch arrived in one answer: all of it is saved, though never printed.
    assert len(all_files(tmp_path)) == 6
    assert len(fake_webui.requests_to(TXT2IMG)) == 2


def test_stdout_closed_from_the_start_exits_141_and_keeps_the_image(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    command = f"{sys.executable} -m sdcli --url {fake_webui.url} generate -q {' '.join(TINY)} "
    r = subprocess.run(
        ["bash", "-c", command + f"x -o {tmp_path} >&-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 141
    assert r.stderr == ""
    assert len(all_files(tmp_path)) == 1


@pytest.mark.parametrize("stdin", ["empty", "comments only", "closed"])
def test_generate_dash_without_prompts_is_a_usage_error(
    fake_webui: FakeWebUI, tmp_path: Path, stdin: str
) -> None:
    command = f"{sys.executable} -m sdcli --url {fake_webui.url} generate - -o {tmp_path}"
    feed = {"empty": " < /dev/null", "comments only": " <<< '# nothing here'", "closed": " <&-"}
    r = subprocess.run(
        ["bash", "-c", command + feed[stdin]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2
    assert "no prompt on stdin" in error_line(r.stderr)
    assert fake_webui.requests == []
    assert all_files(tmp_path) == []


@pytest.mark.parametrize("stdin", ["/dev/null", "closed"])
def test_presets_edit_never_prompts_without_a_terminal(tmp_path: Path, stdin: str) -> None:
    marker = tmp_path / "editor-ran"
    editor = f"touch {marker} && true"
    redirect = " <&-" if stdin == "closed" else " < /dev/null"
    r = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m sdcli presets edit draft" + redirect],
        capture_output=True,
        text=True,
        env={**os.environ, "EDITOR": editor, "VISUAL": editor},
        timeout=120,
        check=False,
    )
    assert r.returncode == 2
    assert "an editor needs a terminal, and stdin is not one" in error_line(r.stderr)
    assert not marker.exists()


# --- prompts: size and scripts ---------------------------------------------------------------


def test_a_100_kb_prompt_round_trips(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    prompt = ("a lighthouse at dusk, (oil painting:1.2), " * 3000)[:100_000].strip()
    r = generate(fake_webui.url, tmp_path, "--json", "-", input=prompt + "\n")
    assert r.returncode == 0, r.stderr
    [row] = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["prompt"] == prompt
    assert fake_webui.requests_to(TXT2IMG)[0].json["prompt"] == prompt
    text = get_parameters(Path(row["path"]).read_bytes())
    assert text is not None and text.startswith(prompt + "\n")
    assert len(Path(row["path"]).name.encode()) <= 255


PROMPTS = {
    "japanese": "猫と犬が桜の下で遊ぶ",
    "chinese": "一只可爱的小猫在月光下",
    "arabic": "قطة لطيفة تحت ضوء القمر",
    "emoji": "🐱🐶✨ cats & dogs 👩‍👩‍👧",
}


def test_prompts_in_other_scripts_round_trip_into_png_and_json(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    stdin = "".join(p + "\n" for p in PROMPTS.values())
    r = generate(fake_webui.url, tmp_path, "--json", "--name", "{prompt_slug}", "-", input=stdin)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["prompt"] for row in rows] == list(PROMPTS.values())
    for row, prompt in zip(rows, PROMPTS.values(), strict=True):
        path = Path(row["path"])
        assert path.parent == tmp_path
        text = get_parameters(path.read_bytes())
        assert text is not None and text.startswith(prompt + "\n")
        assert row["infotext"] == text
    names = [Path(row["path"]).name for row in rows]
    assert names[0] == "猫と犬が桜の下で遊ぶ.png"
    assert names[1] == "一只可爱的小猫在月光下.png"
    assert names[2] == "قطة-لطيفة-تحت-ضوء-القمر.png"
    assert names[3] == "cats-dogs.png"
    # And given as arguments rather than on stdin (argv decoding):
    r = generate(fake_webui.url, tmp_path, "--json", PROMPTS["arabic"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prompt"] == PROMPTS["arabic"]


# --- security --------------------------------------------------------------------------------


def _leaks(result: subprocess.CompletedProcess[str]) -> list[str]:
    token = base64.b64encode(f"u:{SECRET}".encode()).decode()  # the Authorization header
    text = result.stdout + result.stderr
    return [s for s in (SECRET, token) if s in text]


def test_the_password_never_appears_in_any_output(
    make_fake_webui: MakeFake, dead_url: str, tmp_path: Path
) -> None:
    fake = make_fake_webui(auth=("u", SECRET))
    in_url = fake.url.replace("http://", f"http://u:{SECRET}@")
    dead = dead_url
    env = {"SDCLI_AUTH": f"u:{SECRET}"}
    out = ("-o", str(tmp_path))
    runs: list[tuple[tuple[str, ...], dict[str, str], int]] = [
        (("--url", fake.url, "--auth", f"u:{SECRET}", "generate", *TINY, "a", *out), {}, 0),
        (("--url", in_url, "--debug", "generate", *TINY, "b", *out), {}, 0),
        (("--url", fake.url, "--debug", "generate", "--json", *TINY, "c", *out), env, 0),
        (("--url", fake.url, "--auth", f"u:{SECRET}", "generate", "--dry-run", "d"), {}, 0),
        (("--url", in_url, "info", "--json"), {}, 0),
        (("--url", fake.url, "--auth", f"u:x{SECRET}", "--debug", "generate", "e", *out), {}, 4),
        (("--url", dead.replace("http://", f"http://u:{SECRET}@"), "--debug", "generate", "f",
          *out), {}, 3),
        (("--url", f"http://u:{SECRET}@[::1", "generate", "g", *out), {}, 2),
        (("--url", fake.url, "--auth", SECRET, "generate", "h", *out), {}, 2),  # no "USER:"
    ]  # fmt: skip
    results = run_side_by_side([(args, extra_env) for args, extra_env, _ in runs])
    for (args, _, code), r in zip(runs, results, strict=True):
        assert r.returncode == code, (args, r.stderr)
        assert _leaks(r) == [], (args, r.stdout, r.stderr)
        # --debug really shows the details of a failure (and still not the password)
        assert ("Traceback" in r.stderr) == ("--debug" in args and code != 0), r.stderr
    assert len(list(tmp_path.iterdir())) == 3  # a, b and c were saved...
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes()  # ...and hold no password either


EVIL_PROMPTS = [
    "../../../../../../tmp/sdcli-escape",
    "/etc/passwd",
    "..\\..\\windows\\system32\\config",
    "..",
    ".",
    "-rf --no-preserve-root",
    "a\x1b[31mred\x07bell\ttab\x7fdel",
    "\u202egnp.exe",
    "CON",
    "x" * 5000,
    "日本語" * 200,
]


def test_names_built_from_prompts_cannot_escape_the_output_dir(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    out = tmp_path / "deep" / "out"
    stdin = "".join(p + "\n" for p in EVIL_PROMPTS)
    r = generate(fake_webui.url, out, "--name", "{prompt_slug}", "-", input=stdin)
    assert r.returncode == 0, r.stderr
    paths = [Path(line) for line in r.stdout.splitlines()]
    assert len(paths) == len(EVIL_PROMPTS)
    for path in paths:
        assert path.parent == out
        assert path.resolve().parent == out.resolve()
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in path.name)
        assert "\u202e" not in path.name
        assert not path.name.startswith((".", "-"))
        assert len(path.name.encode()) <= 255
        assert path.is_file()
    assert all_files(tmp_path) == ["deep", "deep/out", *sorted(f"deep/out/{p.name}" for p in paths)]
    assert paths[0].name == "tmp-sdcli-escape.png"
    assert paths[1].name == "etc-passwd.png"
    assert paths[8].name == "_con.png"


@pytest.mark.parametrize(
    "template", ["../{seed}", "/tmp/{seed}", "sub/../../{seed}", "..", "{seed}/.."]
)
def test_name_templates_cannot_escape_the_output_dir(
    fake_webui: FakeWebUI, tmp_path: Path, template: str
) -> None:
    out = tmp_path / "out"
    r = generate_here(fake_webui.url, out, "--name", template, "x")
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path.parent == out and path.is_file()
    assert all_files(tmp_path) == ["out", f"out/{path.name}"]


# --- batches that survive faults -------------------------------------------------------------


def test_keep_going_goes_on_after_a_failed_prompt_and_exits_1(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    p = spawn_sdcli(
        "--url", fake_webui.url, "generate", *TINY, "--keep-going", "--name", "{prompt_slug}",
        "-", "-o", str(tmp_path),
    )  # fmt: skip
    p.send("first")
    p.read_stdout()
    fake_webui.fail(TXT2IMG, status=500)
    code, stdout, stderr = p.finish("second", "third")
    assert code == 1
    assert "sdcli: error: failed 'second': the server failed (500)" in stderr
    assert stderr.splitlines()[-1] == "sdcli: error: 1 prompt failed, 2 image(s) saved"
    assert [Path(line).name for line in stdout.splitlines()] == ["third.png"]
    assert all_files(tmp_path) == ["first.png", "third.png"]
    assert "Traceback" not in stderr


def test_without_keep_going_the_first_failure_stops_the_run(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    p = spawn_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "--name", "{prompt_slug}", "-",
        "-o", str(tmp_path),
    )  # fmt: skip
    p.send("first")
    p.read_stdout()
    fake_webui.fail(TXT2IMG, status=500)
    code, stdout, stderr = p.finish("second", "third")
    assert code == 1
    assert "the server failed (500)" in error_line(stderr)
    assert stdout == ""
    assert all_files(tmp_path) == ["first.png"]  # already saved: kept
    assert [r.json["prompt"] for r in fake_webui.requests_to(TXT2IMG)] == ["first", "second"]


@pytest.mark.parametrize(
    ("arm", "retries", "code", "attempts"),
    [
        ({"status": 503, "times": 2}, 2, 0, 3),
        ({"status": 504, "times": 1}, 1, 0, 2),
        ({"mode": "html", "times": 2}, 2, 0, 3),  # a proxy's 502 page
        ({"mode": "close", "times": 1}, 1, 0, 2),  # connection dropped
        ({"status": 503, "times": 3}, 2, 1, 3),  # out of retries
        ({"mode": "close", "times": 3}, 2, 3, 3),
        ({"status": 500, "times": 1}, 3, 1, 1),  # not transient
        ({"status": 422, "body": DETAIL_LIST, "times": 1}, 3, 1, 1),  # never a 4xx
        ({"status": 404, "body": NOT_FOUND, "times": 1}, 3, 1, 1),
    ],
)
def test_retries_only_transient_failures(
    fake_webui: FakeWebUI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arm: dict[str, Any],
    retries: int,
    code: int,
    attempts: int,
) -> None:
    monkeypatch.setenv("SDCLI_RETRY_BACKOFF", "0")
    fake_webui.fail(TXT2IMG, **arm)
    args = ["--url", fake_webui.url, "generate", *TINY, "--retries", str(retries), "x"]
    r = invoke([*args, "-o", str(tmp_path)])
    assert r.exit_code == code, r.stderr
    assert len(fake_webui.requests_to(TXT2IMG)) == attempts
    assert r.stderr.count("; retry ") == (attempts - 1)
    assert "Traceback" not in r.stderr
    assert len(all_files(tmp_path)) == (1 if code == 0 else 0)
    if code:
        error_line(r.stderr)


def test_retry_backoff_is_documented_and_checked(tmp_path: Path) -> None:
    r = run_sdcli("generate", "--help", env={"COLUMNS": "200"})
    assert "SDCLI_RETRY_BACKOFF" in r.stdout
    r = run_sdcli(
        "--url", "http://127.0.0.1:9", "generate", "--retries", "1", "x", "-o", str(tmp_path),
        env={"SDCLI_RETRY_BACKOFF": "soon"},
    )  # fmt: skip
    assert r.returncode == 2
    assert "SDCLI_RETRY_BACKOFF must be a number of seconds, not 'soon'" in error_line(r.stderr)


def test_retry_waits_double_from_the_configured_backoff(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCLI_RETRY_BACKOFF", "0.01")
    fake_webui.fail(TXT2IMG, status=502, times=3)
    r = invoke(
        ["--url", fake_webui.url, "generate", *TINY, "--retries", "3", "x", "-o", str(tmp_path)]
    )
    assert r.exit_code == 0, r.stderr
    waits = [line.rsplit("; retry ", 1)[1] for line in r.stderr.splitlines() if "; retry " in line]
    assert waits == ["1 in 0.01 s", "2 in 0.02 s", "3 in 0.04 s"]
    assert len(fake_webui.requests_to(TXT2IMG)) == 4


# --- a bug of ours ---------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_exception_is_one_line_and_exit_1(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("sdcli.run.run_job", broken)
    flags = ["--debug"] if debug else []
    r = invoke(["--url", fake_webui.url, *flags, "generate", *TINY, "x", "-o", str(tmp_path)])
    assert r.exit_code == 1
    more = "" if debug else ": run again with --debug for the traceback"
    assert r.stderr.splitlines()[-1] == (
        f"sdcli: error: unexpected ZeroDivisionError: division by zero (a bug in sdcli{more})"
    )
    assert ("Traceback" in r.stderr) is debug
