"""Start-up shortcuts (bench/RESULTS.md): they must never change what a command line means."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import sdcli.heap
from sdcli.cli import commands
from sdcli.cli.app import _app_for, _command_word, full_app, root
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import generate, invoke, loaded_by, run_sdcli


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["generate", "a cat"], "generate"),
        (["--url", "http://h:1", "--auth", "u:p", "models"], "models"),
        (["--url=http://h:1", "--debug", "info", "x.png"], "info"),
        (["--timeout", "5", "presets", "list"], "presets"),
        (["--no-cache", "--url", "http://h:1", "generate", "x"], "generate"),
        (["--help"], None),
        (["--version"], None),
        (["--bogus", "generate"], None),
        ([], None),
    ],
)
def test_command_word_finds_the_command_past_global_options(
    argv: list[str], word: str | None
) -> None:
    assert _command_word(argv) == word


def test_lean_app_has_only_the_command_being_run() -> None:
    lean = _app_for(["--url", "http://h:1", "generate", "a cat"])
    assert [c.name for c in lean.registered_commands] == ["generate"]
    assert lean.registered_groups == []
    assert root.registered_commands == [] and root.registered_groups == []  # the root stays bare
    presets = _app_for(["presets", "list"])
    assert presets.registered_commands == []
    assert [g.name for g in presets.registered_groups] == ["presets"]
    # a typo, an unknown option, no command; no words at all: `sdcli` alone, or a shell
    # asking for completions (it passes the words in variables)
    for unusual in (["no-such-command"], ["--bogus", "generate"], ["--debug"], []):
        assert _app_for(unusual) is full_app()


def _listed(typer_app: object) -> list[tuple[str, str | None]]:
    """(name, line in `sdcli --help`) of each command of an app, None for a hidden one."""
    import inspect

    from typer.main import get_command

    group = get_command(typer_app)  # type: ignore[arg-type]
    rows = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        text = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
        rows.append((name, None if command.hidden else text))
    return rows


def test_the_command_table_lists_what_the_modules_register() -> None:
    """A command added to a module but not to COMMANDS (or the other way round), or a one-line
    help that drifted from the command's own, fails here."""
    assert _listed(full_app()) == [(name, short) for name, _, short in commands.COMMANDS]
    for name, module, _ in commands.COMMANDS:
        lean = _app_for([name])
        home = importlib.import_module(f"sdcli.cli.{module}")
        groups = [g.name for g in lean.registered_groups if g.typer_instance is home.app]
        ran = [c.name for c in lean.registered_commands if c.callback.__module__ == home.__name__]
        assert groups + ran == [name]  # that command alone, registered by that module


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--url", "http://h:1", "--help"]])
def test_the_help_listing_imports_no_command_module_and_reads_the_same(argv: list[str]) -> None:
    from typer.testing import CliRunner

    listing = _app_for(argv)
    assert all(c.callback is commands._listed_only for c in listing.registered_commands)
    shown = CliRunner().invoke(listing, argv)
    assert shown.stdout == CliRunner().invoke(full_app(), argv).stdout
    assert "rerun" in shown.stdout and "history" in shown.stdout
    assert "  i " not in shown.stdout  # the hidden alias of interactive


def test_help_and_typos_still_see_every_command() -> None:
    r = run_sdcli("--help")
    assert r.returncode == 0
    for name in ("generate", "set-model", "models", "samplers", "info", "presets"):
        assert name in r.stdout
    typo = run_sdcli("generat", "x")
    assert typo.returncode == 2
    assert "generat" in typo.stderr


def test_version_fast_path_matches_the_app() -> None:
    fast = run_sdcli("--version")
    slow = invoke(["--version"])
    assert fast.returncode == 0 and slow.exit_code == 0
    assert fast.stdout == slow.stdout


def test_keep_freed_heap_does_nothing_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("libc must not be touched here")

    monkeypatch.setattr(sdcli.heap, "_done", False)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(ctypes, "CDLL", forbidden)
    sdcli.heap.keep_freed_heap()
    assert sdcli.heap._done is True
    sdcli.heap.keep_freed_heap()  # once per process: a second call returns at once


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--url", "http://h:1", "--version"], ["presets", "show", "chibi", "--toml"]],
)
def test_closed_stdout_exits_141_without_noise(argv: list[str]) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "sdcli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: __import__("os").close(1),  # start with stdout closed, like `>&-`
    )
    assert done.returncode == 141
    assert done.stderr == ""


def test_the_extras_commands_import_nothing_heavy_until_they_run() -> None:
    """Registering upscale/describe/lists must not load Pillow or their use-case modules."""
    import subprocess

    code = (
        "import sys; from sdcli.cli import app; app.full_app(); "
        "heavy = [m for m in ('PIL', 'sdcli.upscale', 'sdcli.describe', 'sdcli.inputs', "
        "'sdcli.names.listed') if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["show", "--help"], ["generate", "--help"]],
)
def test_no_image_library_is_imported_unless_something_is_drawn(argv: list[str]) -> None:
    _, loaded = loaded_by(*argv)
    assert sorted(loaded & {"PIL", "sdcli.cli.pictures", "textual_image"}) == []


def _imported(*argv: str, input: str | None = None) -> set[str]:
    """Top-level packages a run of `sdcli ARGV` imports (from -X importtime)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sdcli", *argv],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    rows = [line.rpartition("|")[2].strip() for line in done.stderr.splitlines()]
    return {row.split(".")[0] for row in rows if row and not row.startswith("import time")}


def test_prompt_toolkit_is_imported_only_by_interactive_mode_at_a_terminal() -> None:
    assert "sdcli" in _imported("--version")
    assert "prompt_toolkit" not in _imported("--version")
    assert "prompt_toolkit" not in _imported("generate", "--help")
    # lines from a pipe need no line editor either
    assert "prompt_toolkit" not in _imported("interactive", input="/quit\n")


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], ["presets", "list"], ["generate", "--dry-run", "a cat"]],
)
def test_the_history_is_not_loaded_by_commands_that_do_not_use_it(argv: list[str]) -> None:
    """sqlite3 and the history modules cost start-up time: only recording or reading loads them."""
    _, loaded = loaded_by(*argv, env={"SDCLI_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"})
    assert (
        sorted(m for m in loaded if m.startswith(("sqlite3", "sdcli.history", "sdcli.journal")))
        == []
    )


def _with_a_reader_gone(argv: list[str], stream: str) -> tuple[int, str]:
    """sdcli with `stream` (stdout or stderr) writing into a pipe whose reader is already gone,
    as after `| head -1` (or `2>&1 | head -1`) has read its line: every write fails (EPIPE)."""
    import os
    import subprocess

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        other = subprocess.PIPE
        done = subprocess.run(
            [sys.executable, "-m", "sdcli", *argv],
            stdin=subprocess.DEVNULL,
            stdout=write_end if stream == "stdout" else other,
            stderr=write_end if stream == "stderr" else other,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, (done.stderr if stream == "stdout" else done.stdout) or ""


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], ["generate", "--help"], ["presets", "list"], ["presets", "path"]],
)
def test_a_reader_gone_from_stdout_exits_141_without_noise(argv: list[str]) -> None:
    assert _with_a_reader_gone(argv, "stdout") == (141, "")


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--bogus"],  # the parser's error line
        ["--url", "http://[::1", "models"],  # sdcli's own error line
        ["--debug", "--url", "http://[::1", "models"],  # the traceback --debug prints
    ],
)
def test_a_reader_gone_from_stderr_exits_141_without_noise(argv: list[str]) -> None:
    assert _with_a_reader_gone(argv, "stderr") == (141, "")


# What a shell loop's `sdcli generate` may load of sdcli's front end: its own command module and
# what every command shares (bench/RESULTS.md, "Start-up").
WARM_GENERATE_CLI = {
    "sdcli.cli.app",
    "sdcli.cli.commands",
    "sdcli.cli.completion",
    "sdcli.cli.generate_cmd",
    "sdcli.cli.helpformat",
    "sdcli.cli.options",
    "sdcli.cli.render",
    "sdcli.cli.reporter",
    "sdcli.cli.state",
}
# Loaded only by other commands, on a terminal, or for another server's answers.
NOT_FOR_A_WARM_GENERATE = ("rich", "PIL", "prompt_toolkit", "textual_image", "typer.rich_utils",
                           "sdcli.serverinfo", "sdcli.listtypes", "sdcli.interactive",
                           "sdcli.sweeps", "sdcli.grid")  # fmt: skip


def test_a_warm_generate_in_a_pipe_loads_no_other_command(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """With the list cache warm and nothing drawn (stderr is a pipe), start-up is the one
    command's module and what it runs: no other command, no rich, no Pillow."""
    import os

    first = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")  # fills the cache
    assert first.exit_code == 0, first.stderr
    r, loaded = loaded_by(
        "--url", fake_webui.url, "generate", "--sampler", "Euler a", "-o", str(tmp_path), "a dog",
        env=os.environ.copy(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(str(tmp_path)) == 1  # it did generate
    assert {m for m in loaded if m.startswith("sdcli.cli.")} <= WARM_GENERATE_CLI
    assert [m for m in loaded if m.startswith(NOT_FOR_A_WARM_GENERATE)] == []


def test_python_importtime_sees_the_command_module() -> None:
    """bench/ reads what a run imports from `python -X importtime`, which does not log modules
    loaded with importlib.import_module: the command table must load them so that it does."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sdcli", "generate", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    logged = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()}
    assert "sdcli.cli.generate_cmd" in logged


# Counts what dataclasses compiles (its one exec call) while the modules named on stdin import.
_COMPILING = """
import collections, dataclasses, sys
import requests, typer.main
compiled = collections.Counter()
def counting(source, globals=None, locals=None):
    compiled[(globals or {}).get("__name__")] += 1
    exec(source, globals, locals)
dataclasses.exec = counting
for name in sys.stdin.read().split():
    __import__(name)
print(sorted(name for name in compiled if name and name.startswith("sdcli")))
"""


def test_the_types_a_warm_generate_loads_compile_nothing(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """`@dataclass` compiles up to six methods a class: ~60 % of what importing sdcli's modules
    cost a warm generate, before sdcli.datatypes (bench/RESULTS.md, "Issue 18: cheaper types")."""
    import os
    import subprocess

    assert generate(fake_webui, tmp_path, "a cat").exit_code == 0  # fills the cache
    r, loaded = loaded_by(
        "--url", fake_webui.url, "generate", "-o", str(tmp_path), "a dog", env=os.environ.copy()
    )
    assert r.returncode == 0, r.stderr
    ours = sorted(m for m in loaded if m.startswith("sdcli."))
    assert "sdcli.events" in ours and "sdcli.apitypes" in ours
    done = subprocess.run(
        [sys.executable, "-c", _COMPILING], input=" ".join(ours),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"  # the modules that made a class with @dataclass


# Modules a warm `generate` needs only once the request is on its way: the history's (sqlite3
# and its store), what saving and recording an answer read (the PNG chunks, the infotext).
AFTER_THE_REQUEST = ("sqlite3", "sdcli.history.store", "sdcli.pngmeta", "sdcli.infotext")
_AT_SEND = (
    "import runpy, socket, sys\n"
    "at_send = []\n"
    "sendall = socket.socket.sendall\n"
    "def watch(self, data, *args):\n"
    "    if not at_send and bytes(data[:22]) == b'POST /sdapi/v1/txt2img':\n"
    "        at_send.append(sorted(sys.modules))\n"
    "    return sendall(self, data, *args)\n"
    "socket.socket.sendall = watch\n"
    "sys.argv = ['sdcli', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('sdcli', run_name='__main__')\n"
    "finally:\n"
    "    sys.stderr.write('\\nAT_SEND=' + ' '.join(at_send[0] if at_send else ['-']))\n"
    "    sys.stderr.write('\\nLOADED=' + ' '.join(sorted(sys.modules)) + '\\n')\n"
)


def test_a_warm_generate_sends_its_request_before_loading_the_history(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """What does not depend on the answer is done while the server works on it: the request
    goes out before the history's modules are loaded, and the run still records it."""
    import os
    import sqlite3
    import subprocess

    first = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")  # fills the cache
    assert first.exit_code == 0, first.stderr
    argv = ["--url", fake_webui.url, "generate", "--sampler", "Euler a", "-o", str(tmp_path)]
    r = subprocess.run(
        [sys.executable, "-c", _AT_SEND, *argv, "a dog"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    at_send = set(r.stderr.rpartition("AT_SEND=")[2].partition("\n")[0].split())
    loaded = set(r.stderr.rpartition("LOADED=")[2].split())
    assert "sdcli.run" in at_send  # the snapshot is the generation's, not an empty one
    assert sorted(m for m in at_send if m.startswith(AFTER_THE_REQUEST)) == []
    assert set(AFTER_THE_REQUEST) <= loaded  # loaded while the server worked, and used
    from sdcli.config import data_dir

    with sqlite3.connect(data_dir() / "history.db") as db:
        rows = db.execute("SELECT prompt, outcome FROM generations ORDER BY id").fetchall()
    assert rows == [("a cat", "ok"), ("a dog", "ok")]
