"""`sdcli interactive` (`sdcli i`): the command line that opens interactive mode."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from sdcli.cli import options as opts
from sdcli.cli.state import AppState

HELP = """\
Interactive mode: type a prompt, press Enter, get an image; adjust with / commands; again.

Starts from the same settings as `generate` (presets, flags, --set); /help lists the commands
(/preset, /set, /neg, /seed, /model, /size, /steps, /again, /vary, /settings, /quit…). At a
terminal: completion with Tab, a toolbar, input history (Up, Down, Ctrl-R); Ctrl-C stops the
server's job and returns to the prompt; Ctrl-D leaves. When stdin is not a terminal, each line
(a prompt or a / command) runs in order, like a script: saved paths on stdout, and the first
error ends the run with its exit code.

[bold]Examples[/]

  sdcli interactive -p chibi
  sdcli i -p draft --seed 42 -o out/
  printf '/seed 42\\na cat\\n/again\\n' | sdcli i -p draft -o out/
"""


def register(app: typer.Typer) -> None:
    @opts.with_txt2img_flags
    def interactive(
        ctx: typer.Context,
        preset: opts.Preset = None,
        from_image: opts.FromImage = None,
        set_: opts.Sets = None,
        output_dir: opts.OutputDir = None,
        name: Annotated[
            str | None,
            typer.Option("--name", help="File name template, as for generate."),
        ] = None,
        overwrite: opts.Overwrite = False,
        retries: Annotated[
            int,
            typer.Option(min=0, help="Retry connection errors and 502/503/504, as generate."),
        ] = 0,
        *,
        flags: dict[str, Any],  # the value flags (--steps, --cfg…): see options.with_txt2img_flags
    ) -> None:
        from sdcli.interactive.session import RunOptions, Session
        from sdcli.preset_schema import FLAG_LABELS

        state: AppState = ctx.obj
        names = list(preset or [])
        if not names and state.settings.default_preset:
            names = [state.settings.default_preset]
        options = RunOptions(
            output_dir=state.output_dir(output_dir),
            name_template=name,
            overwrite=overwrite,
            retries=retries,
            from_image=from_image,
        )
        session = Session.start(names, flags, set_ or [], options, labels=FLAG_LABELS)
        from sdcli.interactive.main import run

        run(state, session, terminal=sys.stdin.isatty() and sys.stderr.isatty())

    app.command("interactive", help=HELP)(interactive)
    app.command("i", help=HELP, hidden=True)(interactive)
