"""Usage errors of the command line itself (issue 10, item 2): one line `sdcli: error: …`, one
hint line naming the help to read, exit 2; never the parser's boxed panel."""

from __future__ import annotations

import pytest

from cli_helpers import invoke, run_sdcli

CASES = [
    (["generate", "--steps", "abc", "a cat"], "invalid value for '--steps'", "sdcli generate"),
    (["generate", "--bogus", "a cat"], "no such option: --bogus", "sdcli generate"),
    (["generate", "a cat", "--cfg"], "option '--cfg' requires an argument", "sdcli generate"),
    (["generat", "a cat"], "no such command 'generat'", "sdcli"),
    (["set-model"], "missing argument 'NAME'", "sdcli set-model"),
    (["presets", "show"], "missing argument 'NAME'", "sdcli presets show"),
    (["presets", "new", "x", "--steps"], "requires an argument", "sdcli presets new"),
    (["presets", "frob"], "no such command 'frob'", "sdcli presets"),
    (["--timeout"], "option '--timeout' requires an argument", "sdcli"),
    (["--bogus", "info"], "no such option: --bogus", "sdcli"),
]


def check(stderr: str, fragment: str, command: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith("sdcli: error: ") and fragment in lines[0], stderr
    assert lines[1] == f"see '{command} --help'"
    assert "╭" not in stderr and "Usage:" not in stderr


@pytest.mark.parametrize(("args", "fragment", "command"), CASES)
def test_a_real_process_reports_one_line_a_hint_and_exits_2(
    args: list[str], fragment: str, command: str
) -> None:
    r = run_sdcli("--url", "http://127.0.0.1:9", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    check(r.stderr, fragment, command)


@pytest.mark.parametrize(("args", "fragment", "command"), CASES)
def test_in_process_the_same(args: list[str], fragment: str, command: str) -> None:
    r = invoke(["--url", "http://127.0.0.1:9", *args])
    assert r.exit_code == 2
    assert r.stdout == ""
    check(r.stderr, fragment, command)
