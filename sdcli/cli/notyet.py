"""A command that is designed but not built yet says so and exits 2 instead of pretending."""

from __future__ import annotations

from sdcli.errors import UsageError


def not_built(command: str) -> None:
    raise UsageError(f"'sdcli {command}' is not built yet in this version")
