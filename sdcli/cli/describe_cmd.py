"""`sdcli describe IMAGE...`: the server's caption (CLIP) or tags (DeepDanbooru) per image."""

from __future__ import annotations

from typing import Annotated

import typer

from sdcli.cli import options as opts
from sdcli.cli import render
from sdcli.cli.state import AppState

DESCRIBE_HELP = """\
Describe images with the server's interrogator: one caption per image on stdout, one line each,
in the order given (a directory gives its images sorted by name).

--model clip (default) writes a sentence and style words; --model deepdanbooru writes
comma-separated tags. --json: one object per image ({"path", "model", "caption"}).
Every file is checked before the first is sent: one that is not an image exits 2.
A server without the interrogator's weights exits 1 saying so.

[bold]Examples[/]

  sdcli describe photo.png
  sdcli describe --model deepdanbooru out/ > tags.txt
  sdcli generate "$(sdcli describe ref.jpg)" -n 4          [dim]# variations on a theme[/]
"""


def register(app: typer.Typer) -> None:
    @app.command("describe", help=DESCRIBE_HELP, short_help="Caption or tag images (interrogate).")
    def describe(
        ctx: typer.Context,
        images: opts.Images,
        model: Annotated[str, typer.Option("--model", "-m", help="clip or deepdanbooru.")] = "clip",
        json_lines: Annotated[
            bool, typer.Option("--json", help="One JSON object per image on stdout.")
        ] = False,
    ) -> None:
        from sdcli.cli.models_cmd import spinner
        from sdcli.describe import check_model
        from sdcli.describe import describe as describe_one
        from sdcli.inputs import read_images

        name = check_model(model)
        found = read_images(images)
        state: AppState = ctx.obj
        client = state.client
        for image in found:
            with spinner(f"describing {image.path}…"):
                caption = describe_one(client, image, name)
            if not caption.strip():
                render.warn(f"{image.path}: the server found nothing to say (an empty caption)")
            if json_lines:
                render.result_json({"path": str(image.path), "model": name, "caption": caption})
            else:
                render.result(caption.replace("\n", " "))
