"""Registers every command on the app; command modules import their heavy dependencies lazily."""

from __future__ import annotations

import typer

from sdcli.cli import (
    describe_cmd,
    generate_cmd,
    history_cmd,
    info_cmd,
    interactive_cmd,
    jobs_cmd,
    lists_cmd,
    models_cmd,
    presets_cmd,
    show_cmd,
    upscale_cmd,
)


def register(app: typer.Typer) -> None:
    generate_cmd.register(app)
    history_cmd.register_rerun(app)
    models_cmd.register(app)
    info_cmd.register(app)
    jobs_cmd.register(app)
    lists_cmd.register(app)
    describe_cmd.register(app)
    upscale_cmd.register(app)
    show_cmd.register(app)
    interactive_cmd.register(app)
    app.add_typer(presets_cmd.app, name="presets")
    app.add_typer(history_cmd.app, name="history", cls=history_cmd.HistoryGroup)
