"""`sdcli interrupt` and `sdcli skip`: stop the job running on the server, whoever sent it."""

from __future__ import annotations

import typer

from sdcli.cli import render
from sdcli.cli.state import AppState

INTERRUPT_HELP = """\
Stop the job the server is running (whoever sent it) and say whether one was running.

The server returns what it made so far to the client that sent the job. Jobs waiting in the
server's queue are not touched. Nothing is sent when no job is running. Exit 0 either way.

[bold]Examples[/]

  sdcli interrupt
  sdcli --timeout 60 generate -p sdxl "a cat" || sdcli interrupt   [dim]# a timed-out job runs on[/]
"""

SKIP_HELP = """\
Skip the image the server is making and go on with the job's next one (with --count or a
batch count), and say whether a job was running. Exit 0 either way.
"""


def register(app: typer.Typer) -> None:
    @app.command("interrupt", help=INTERRUPT_HELP, short_help="Stop the server's running job.")
    def interrupt(ctx: typer.Context) -> None:
        stop_server_job(ctx.obj, "interrupt")

    @app.command("skip", help=SKIP_HELP, short_help="Skip the image the server is making.")
    def skip(ctx: typer.Context) -> None:
        stop_server_job(ctx.obj, "skip")


def stop_server_job(state: AppState, action: str) -> None:
    from sdcli.jobs import stop_job

    outcome = stop_job(state.client, "interrupt" if action == "interrupt" else "skip")
    if not outcome.running:
        render.note(f"no job was running: nothing to {action}")
        return
    what = outcome.describe()
    done = "interrupted the running job" if action == "interrupt" else "skipped the current image"
    render.note(f"{done}{f' ({what})' if what else ''}")
