"""The README as a newcomer follows it (issue 10, item 12): its commands stay true."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    section = README.split("**2. Run the tests**", 1)[1]
    command = re.search(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)
    assert command is not None
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().splitlines()
    assert ci[-1] == command.group(1)


def test_install_advice_works_on_a_system_python() -> None:
    first = next(line for line in shell_lines() if "install" in line)
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install")  # no bare pip
    assert "pipx install ." in README


def test_every_example_that_saves_writes_into_out() -> None:
    saving = [
        line
        for line in shell_lines()
        if "sdcli generate" in line and "--dry-run" not in line and "--help" not in line
    ]
    assert saving
    assert [line for line in saving if "-o out/" not in line] == []


def test_the_fake_is_started_so_it_can_be_stopped_without_a_sleep(tmp_path: Path) -> None:
    [start] = [line for line in shell_lines() if "fake_webui --detach" in line]
    assert "sleep" not in start
    assert any(line.startswith('kill "$fake"') for line in shell_lines())
    # The same line, run: on a free port, with this interpreter, in a scratch directory.
    python = shlex.quote(sys.executable)
    url = "$(grep -o 'http://127.0.0.1:[0-9]*' fake.log)"
    line = (
        start.replace(".venv/bin/python", python)
        .replace("--detach", "--detach --port 0 2>fake.log")
        .replace(".venv/bin/sdcli", f'{python} -m sdcli --url "{url}"')
    )
    script = f'{line}\nstatus=$?\nkill "$fake"\nexit $status\n'
    r = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    [path] = r.stdout.splitlines()
    assert path.startswith("out/") and (tmp_path / path).is_file()


def test_changelog_entries_are_wrapped() -> None:
    """Each CHANGELOG line fits 100 columns, as its entries are wrapped (a diff reads well)."""
    long = [
        n
        for n, line in enumerate((ROOT / "CHANGELOG.md").read_text().splitlines(), 1)
        if len(line) > 100
    ]
    assert long == []
