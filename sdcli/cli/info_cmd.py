"""`sdcli info`: the server, or the generation parameters stored in image files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sdcli.cli import render
from sdcli.cli.state import AppState
from sdcli.errors import ExitCode, SdcliError, UsageError

if TYPE_CHECKING:
    from sdcli.imageparams import ImageParameters
    from sdcli.serverinfo import ServerInfo

HELP = """\
Without IMAGE: show the server: URL, whether it answers, which web UI it is (AUTOMATIC1111,
reForge, Forge or SD.Next; UI mode or API only) and its version where the server tells it,
loaded checkpoint, clip skip, numbers of checkpoints, samplers and schedulers, and whether a
job is running.
An unreachable server still shows what is known, then exits 3.

With IMAGE files: show the generation parameters stored in each (PNG text chunk, or JPEG/WebP
EXIF), read locally without asking the server: prompt, negative prompt, then every key.
A file without parameters gets one line on stderr; the others are still shown; exit 2.

At a terminal: tables. Piped: tab-separated "key value" lines ("file key value" with several
files; newlines and tabs in values written as \\n and \\t). --json: the server as one JSON
object, or one JSON object per image (path, prompt, negative_prompt, width, height, steps,
sampler, scheduler, cfg_scale, seed, model, parameters, infotext; numbers as numbers).

[bold]Examples[/]

  sdcli info
  sdcli info out/2024-05-01-1200-0-42.png
  sdcli info *.png --json | jq -r .parameters.Seed
  sdcli info image.png --raw                 [dim]# the stored text exactly[/]
"""


def register(app: typer.Typer) -> None:
    @app.command(
        "info",
        help=HELP,
        short_help="Show the server (flavour, version, model, busy?) or the parameters in images.",
    )
    def info(
        ctx: typer.Context,
        images: Annotated[
            list[Path] | None,
            typer.Argument(
                help="Image files to read parameters from (no server needed).", metavar="[IMAGE]..."
            ),
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="JSON on stdout (one object per line).")
        ] = False,
        raw: Annotated[
            bool, typer.Option("--raw", help="With IMAGE: print the stored text as is.")
        ] = False,
    ) -> None:
        if images:
            if json_out and raw:
                raise UsageError("--json and --raw cannot be used together")
            _show_images(images, json_out=json_out, raw=raw)
            return
        if raw:
            raise UsageError("--raw needs IMAGE files")
        state: AppState = ctx.obj
        show_server(state, json_out=json_out)


def _show_images(paths: list[Path], *, json_out: bool, raw: bool) -> None:
    from sdcli.imageparams import read_image_parameters

    failed = 0
    several = len(paths) > 1
    for path in paths:
        try:
            params = read_image_parameters(path)
        except SdcliError as exc:
            render.error(str(exc))
            failed += 1
            continue
        if json_out:
            render.result_json(params.as_json())
        elif raw:
            if several:
                render.note(f"==> {path} <==")
            render.result(params.text)
        else:
            _image_table(params, several=several)
    if failed:
        # Each bad file already has its line; the exit code tells scripts not all were read.
        raise typer.Exit(int(ExitCode.USAGE))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _image_table(params: ImageParameters, *, several: bool) -> None:
    rows = params.rows()
    if render.wants_table():
        render.table(str(params.path), ["key", "value"], [list(r) for r in rows])
        return
    prefix = [str(params.path)] if several else []
    render.table(None, [], [[*prefix, key, _escape(value)] for key, value in rows])


def show_server(state: AppState, *, json_out: bool) -> None:
    from sdcli.serverinfo import gather

    settings = state.settings
    info = gather(state.client, url_source=settings.url_source)
    for warning in info.warnings:
        render.warn(warning)
    if json_out:
        render.result_json(info.as_dict())
    else:
        render.table(None, ["key", "value"], _server_rows(info))
    if info.error is not None:
        raise info.error


def _server_rows(info: ServerInfo) -> list[list[str]]:
    def known(value: object, unknown: str = "unknown") -> str:
        return unknown if value is None else str(value)

    source = "" if info.url_source == "default" else f" (from {info.url_source})"
    rows = [["url", info.url + source], ["reachable", "yes" if info.reachable else "no"]]
    if not info.answered:
        return rows
    version = info.version or "unknown until a generation reports it"
    if info.version and info.version_source:
        version += f" (from {info.version_source})"
    if info.has_schedulers is False and info.flavour and info.flavour.name == "sdnext":
        schedulers = "none (SD.Next's own settings pick the schedule)"
    elif info.has_schedulers is False:
        schedulers = "none (schedules are part of sampler names)"
    else:
        schedulers = known(info.schedulers)
    if info.busy:
        job = "yes"
        if info.progress is not None:
            job += f", {info.progress:.0%}"
        if info.job:
            job += f" ({info.job})"
    else:
        job = known(None if info.busy is None else "no")
    rows += [
        ["flavour", info.flavour.describe() if info.flavour else "unknown"],
        ["version", version],
        ["model", _model_row(info)],
        ["clip skip", known(info.clip_skip)],
        ["checkpoints", known(info.models)],
        ["samplers", known(info.samplers)],
        ["schedulers", schedulers],
        ["job running", job],
    ]
    return rows


def _model_row(info: ServerInfo) -> str:
    if info.current_model is None:
        return "none loaded"
    if info.flavour is not None and info.flavour.name == "forge":
        from sdcli.serverinfo import FORGE_SELECTED

        return f"{info.current_model} ({FORGE_SELECTED})"
    return info.current_model
