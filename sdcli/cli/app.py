"""The Typer app: global options, command registration, and the one place errors become exits."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sdcli import __version__
from sdcli.cli import render
from sdcli.cli.state import AppState
from sdcli.errors import ExitCode, SdcliError

EXIT_CODES_HELP = (
    "Exit codes: 0 ok · 1 the server failed or refused the request · 2 bad usage or bad local "
    "input (preset, file, value, unknown model/sampler) · 3 cannot reach the server (refused, "
    "DNS, timeout, connection lost) · 4 authentication failed · 130 interrupted (Ctrl-C)."
)


class SdcliGroup(TyperGroup):
    """Turns every SdcliError and Ctrl-C into one line on stderr and a documented exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SdcliError as exc:
            if _debug(ctx):
                raise
            render.error(str(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            render.error("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _debug(ctx: Any) -> bool:
    state = ctx.obj
    if isinstance(state, AppState) and state.debug:
        return True
    return os.environ.get("SDCLI_DEBUG", "") not in ("", "0")


app = typer.Typer(
    name="sdcli",
    cls=SdcliGroup,
    help=(
        "A fast, scriptable client for the Stable Diffusion web UI API "
        "(AUTOMATIC1111, Forge, reForge, SD.Next).\n\n"
        "Results (saved paths, JSON lines) go to stdout; progress and messages to stderr."
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold --auth credentials
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        render.result(f"sdcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Web UI address (env SDCLI_URL) \\[default: http://127.0.0.1:7860].",
        ),
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            help="USER:PASS for a web UI started with --api-auth (env SDCLI_AUTH; never shown).",
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            help=(
                "Seconds to wait for a generation or model load (env SDCLI_TIMEOUT) "
                "\\[default: 0 = no limit]."
            ),
        ),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show tracebacks and HTTP details (env SDCLI_DEBUG=1)."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    # Environment variables and the config file are resolved in sdcli.config, in one place.
    state = AppState(url=url, auth=auth, timeout=timeout, debug=debug)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register() -> None:
    from sdcli.cli import commands

    commands.register(app)


_register()


def run() -> None:
    app(prog_name="sdcli")
