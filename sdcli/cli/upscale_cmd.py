"""`sdcli upscale IMAGE...`: the extras tab (upscalers, face restoration) on local images."""

from __future__ import annotations

from typing import Annotated

import typer

from sdcli.cli import options as opts
from sdcli.cli import render
from sdcli.cli.state import AppState

UPSCALE_HELP = """\
Upscale images on the server (its extras tab) and save the results; print each path on stdout.

--upscaler NAME picks the upscaler (`sdcli upscalers` lists them; names resolve like samplers:
any case, separators ignored, "did you mean" when unknown). --scale 2 multiplies the size (the
server rounds each side down to a multiple of 8); --to WxH gives an exact size, cropped to fit.
--upscaler-2 NAME --blend 0.3 mixes in a second upscaler. --restore-faces gfpgan|codeformer runs
a face restorer after the upscale (alone with --upscaler None).

One image goes to /extra-single-image, several to /extra-batch-images, 8 per request. Each
result is saved as NAME-x2.png (NAME-1024x768.png with --to) in --output-dir, never over an
existing file; it keeps the original's generation parameters and gains a `postprocessing`
text chunk recording the step. --json: one object per image (path, input, width, height,
postprocessing, parameters).

[bold]Examples[/]

  sdcli upscale out/cat.png --upscaler R-ESRGAN-4x+ --scale 2
  sdcli upscale out/ --upscaler lanczos --to 1920x1080 -o big/
  sdcli upscale face.png --upscaler None --restore-faces codeformer
"""


def _size(text: str | None) -> tuple[int, int] | None:
    from sdcli.errors import UsageError

    if text is None:
        return None
    w, sep, h = text.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise UsageError(f"--to must look like WIDTHxHEIGHT (e.g. 1024x768), got {text!r}")
    return int(w), int(h)


def register(app: typer.Typer) -> None:
    @app.command("upscale", help=UPSCALE_HELP, short_help="Upscale images on the server (extras).")
    def upscale(
        ctx: typer.Context,
        images: opts.Images,
        upscaler: Annotated[
            str | None,
            typer.Option("--upscaler", "-u", help="Upscaler name (`sdcli upscalers`)."),
        ] = None,
        scale: Annotated[
            float | None, typer.Option("--scale", help="Size factor \\[default: 2].")
        ] = None,
        to: Annotated[
            str | None, typer.Option("--to", help="Exact size WxH instead of --scale.")
        ] = None,
        upscaler_2: Annotated[
            str | None, typer.Option("--upscaler-2", help="A second upscaler to blend in.")
        ] = None,
        blend: Annotated[
            float, typer.Option("--blend", help="The second upscaler's share, 0 to 1.")
        ] = 0.5,
        restore_faces: Annotated[
            str | None,
            typer.Option("--restore-faces", help="gfpgan or codeformer, after the upscale."),
        ] = None,
        restore_strength: Annotated[
            float, typer.Option("--restore-strength", help="Face restorer visibility, 0 to 1.")
        ] = 1.0,
        codeformer_weight: Annotated[
            float,
            typer.Option("--codeformer-weight", help="CodeFormer weight (0: strongest), 0 to 1."),
        ] = 0.5,
        output_dir: opts.OutputDir = None,
        overwrite: opts.Overwrite = False,
        json_lines: opts.JsonLines = False,
    ) -> None:
        from sdcli.cli.models_cmd import spinner
        from sdcli.errors import UsageError
        from sdcli.inputs import read_images
        from sdcli.output import check_output_dir
        from sdcli.upscale import UpscaleSpec, resolve, upscale_all

        if scale is not None and to is not None:
            raise UsageError("give --scale or --to, not both")
        spec = UpscaleSpec(
            upscaler=upscaler or "None",
            scale=scale if scale is not None else (None if to else 2.0),
            to=_size(to),
            second=upscaler_2,
            blend=blend if upscaler_2 else 0.0,
            restorer=restore_faces,
            restore_strength=restore_strength,
            codeformer_weight=codeformer_weight,
        )
        spec.check()
        found = read_images(images)
        state: AppState = ctx.obj
        directory = state.output_dir(output_dir)
        check_output_dir(directory)
        client = state.client
        restorers = client.face_restorers() if spec.restorer else []
        spec = resolve(spec, [u.name for u in client.upscaler_list()], restorers)
        if upscaler and spec.upscaler != upscaler:
            render.note(f"{upscaler} -> {spec.upscaler}")
        what = f"{len(found)} image{'s' if len(found) != 1 else ''}"
        results = upscale_all(client, found, spec, directory, overwrite=overwrite)
        while True:
            with spinner(f"upscaling {what} with {spec.upscaler}…"):
                saved = next(results, None)  # the results are printed with no spinner up
            if saved is None:
                break
            for note in saved.notes:
                render.warn(f"{saved.path}: {note}")
            if json_lines:
                render.result_json(saved.as_json())
            else:
                render.result(str(saved.path))
