"""`sdcli show IMAGE...`: the pictures on the terminal, each with its key parameters under it.

Pictures are for a person, so they go where everything for a person goes: stderr, and only when
it is a terminal. `show` has no result, so stdout stays empty; without a terminal each image is
one plain line on stderr (path, prompt, seed, model, size) instead of a picture.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sdcli.cli import render
from sdcli.cli.state import AppState
from sdcli.errors import ExitCode, SdcliError

if TYPE_CHECKING:
    from sdcli.cli.pictures import Tile

HELP = """Draw images in the terminal, each with its prompt, seed, model and size under it.

Several images make a contact sheet as wide as the terminal. The best way the terminal offers
is used (Kitty graphics, iTerm2 inline images, Sixel; coloured half-blocks elsewhere and in
tmux); SDCLI_IMAGES=auto|kitty|iterm|sixel|blocks|none forces one. Pictures go to stderr and
only to a terminal; stdout stays empty.
"""
SHEET_COLUMNS = 32  # a tile's default width in a contact sheet
CAPTION_LINES = 4


def register(app: typer.Typer) -> None:
    @app.command("show", help=HELP, short_help="Draw images in the terminal with their parameters.")
    def show(
        ctx: typer.Context,
        images: Annotated[list[Path], typer.Argument(help="Image files.", metavar="IMAGE...")],
        width: Annotated[
            int | None,
            typer.Option("--width", min=1, metavar="COLS", help="At most this many columns each."),
        ] = None,
        height: Annotated[
            int | None,
            typer.Option("--height", min=1, metavar="ROWS", help="At most this many rows each."),
        ] = None,
    ) -> None:
        state: AppState = ctx.obj
        show_images(images, state.settings.images, width=width, height=height)


def show_images(paths: list[Path], setting: str, *, width: int | None, height: int | None) -> None:
    from sdcli.cli.pictures import (
        Tile,
        detect_mode,
        draw_tiles,
        file_for_kitty,
        kitty_reads_files,
        open_image,
    )
    from sdcli.config import terminal

    mode = detect_mode(terminal(), setting) if render.stderr_is_tty() else "none"
    by_path = mode == "kitty" and kitty_reads_files(terminal())
    tiles: list[Tile] = []
    failed = 0
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            render.error(f"cannot read {path}: {exc.strerror or exc}")
            failed += 1
            continue
        try:
            # Kitty and iTerm2 get the file itself, a caption line only its size: only
            # half-blocks and Sixel need the pixels
            image = open_image(data) if mode in ("blocks", "sixel") else None
            tile = Tile(data, image=image, path=file_for_kitty(path) if by_path else None)
        except ValueError as exc:
            render.error(f"{path}: {exc}")
            failed += 1
            continue
        tile.caption = _caption(path, data, tile.width, tile.height)
        if mode == "none":
            render.note(" · ".join(tile.caption))
        else:
            tiles.append(tile)
    if tiles:
        columns, lines = _terminal_size()
        if len(tiles) == 1:
            tile_columns = min(width or columns - 1, columns - 1)
            tile_rows = height or max(4, lines - CAPTION_LINES - 2)
        else:
            tile_columns = min(width or SHEET_COLUMNS, columns - 1)
            tile_rows = height or min(tile_columns, max(4, lines - CAPTION_LINES - 2))
        pieces = draw_tiles(
            tiles, mode, columns=columns - 1, tile_columns=tile_columns, tile_rows=tile_rows
        )
        render.picture(pieces)
    if failed:
        raise typer.Exit(int(ExitCode.USAGE))


def _caption(path: Path, data: bytes, width: int, height: int) -> list[str]:
    """Path, prompt, seed and size, model: from the PNG text chunk or the JPEG's EXIF."""
    from sdcli.infotext import parse_infotext
    from sdcli.pngmeta import parameters_from_bytes

    try:
        text = parameters_from_bytes(data, str(path))
    except SdcliError:
        text = None
    size = f"{width}x{height}"
    if not text or not text.strip():
        return [render.printable(str(path)), "no generation parameters", size]
    info = parse_infotext(text)
    seed = f"seed {info.seed}" if info.seed is not None else "no seed"
    return [
        render.printable(str(path)),
        render.printable(info.prompt) or "(no prompt)",
        f"{seed} · {size}",
        render.printable(info.model or "unknown model"),
    ]


def _terminal_size() -> tuple[int, int]:
    try:
        columns, lines = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        columns, lines = 0, 0
    return (max(columns, 10) if columns else 80), (max(lines, 8) if lines else 24)
