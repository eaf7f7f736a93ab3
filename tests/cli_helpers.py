"""Ways to run sdcli in tests: a real process (the scripting contract) or Typer's CliRunner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from typer.testing import CliRunner

ANSI = "\x1b["


def run_sdcli(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Any = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m sdcli ARGS` with pipes for stdin/stdout/stderr (so nothing is a TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "sdcli", *args],
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        cwd=cwd,
        timeout=120,  # a safety net against a hung test, not a timing assertion
        check=False,
    )


def invoke(args: Sequence[str], input: str | None = None) -> Any:
    """Run the Typer app in-process; `.stdout` and `.stderr` are kept apart."""
    from sdcli.cli.app import app

    return CliRunner().invoke(app, list(args), input=input)
