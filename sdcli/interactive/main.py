"""Interactive mode's two ways in: the line editor at a terminal, lines one by one otherwise."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from sdcli.interactive.engine import Engine

if TYPE_CHECKING:
    from sdcli.cli.state import AppState
    from sdcli.interactive.session import Session


def run(state: AppState, session: Session, *, terminal: bool) -> None:
    """Interactive mode until /quit, Ctrl-D or the end of stdin."""
    from sdcli.cli import render

    engine = Engine(state, session, terminal=terminal, progress=render.stderr_is_tty())
    if terminal:
        from sdcli.cli.generate_cmd import picture_mode

        engine.pictures = picture_mode(state, quiet=False)
        engine.preview = engine.pictures is not None and state.settings.live_preview
        engine.thumbnails = state.settings.thumbnails
    if terminal:
        from sdcli.interactive.ui import run_terminal

        run_terminal(engine)
    else:
        run_lines(engine, sys.stdin)


def run_lines(engine: Engine, lines: TextIO) -> None:
    """Each line in order, without any UI, like a script: the first error ends the run (with
    its exit code), as it would end `sdcli generate`."""
    for line in lines:
        if not engine.handle(line.rstrip("\r\n")):
            return
