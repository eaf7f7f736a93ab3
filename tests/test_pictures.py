"""Pictures in the terminal: half-blocks cell by cell, the mode from the environment, `show`."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pyte
import pytest
from PIL import Image

from sdcli.cli.pictures import (
    Tile,
    detect_mode,
    draw_tiles,
    fit_cells,
    halfblock_lines,
    iterm_sequence,
    kitty_sequence,
    open_image,
)

from cli_helpers import run_sdcli
from terminal_helpers import Terminal

FIXTURES = Path(__file__).parent / "fixtures"
# A 4x4 image whose 16 pixels all differ: row y, column x = (40*x + 10, 60*y + 5, 200 - 40*x).
PIXELS = [[(40 * x + 10, 60 * y + 5, 200 - 40 * x) for x in range(4)] for y in range(4)]


def _hex(rgb: tuple[int, int, int]) -> str:
    return "{:02x}{:02x}{:02x}".format(*rgb)


def _four_by_four() -> Image.Image:
    image = Image.new("RGB", (4, 4))
    for y, row in enumerate(PIXELS):
        for x, rgb in enumerate(row):
            image.putpixel((x, y), rgb)
    return image


def test_half_blocks_of_a_known_4x4_image_cell_by_cell() -> None:
    lines = halfblock_lines(_four_by_four(), 4, 2)
    screen = pyte.Screen(10, 3)
    stream = pyte.Stream(screen)
    stream.feed("\r\n".join(lines))
    for row in range(2):
        for x in range(4):
            cell = screen.buffer[row][x]
            assert cell.data == "▀"
            assert cell.fg == _hex(PIXELS[2 * row][x]), (row, x)  # upper pixel
            assert cell.bg == _hex(PIXELS[2 * row + 1][x]), (row, x)  # lower pixel
    assert screen.buffer[0][4].data == " " and screen.buffer[0][4].bg == "default"  # reset after


def test_a_run_of_one_colour_sends_its_colour_once() -> None:
    lines = halfblock_lines(Image.new("RGB", (8, 2), (1, 2, 3)), 8, 1)
    assert lines == ["\x1b[38;2;1;2;3;48;2;1;2;3m" + "▀" * 8 + "\x1b[0m"]


@pytest.mark.parametrize(
    ("env", "setting", "mode"),
    [
        ({"TERM": "xterm-256color"}, "auto", "blocks"),
        ({"TERM": "xterm-kitty"}, "auto", "kitty"),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "3"}, "auto", "kitty"),
        ({"TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty"}, "auto", "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, "auto", "iterm"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, "auto", "iterm"),
        ({"TERM": "foot"}, "auto", "sixel"),
        ({"TERM": "mlterm"}, "auto", "sixel"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "vscode"}, "auto", "blocks"),
        ({"TERM": "dumb"}, "auto", "none"),
        # tmux: blocks, even inside kitty or iTerm2 (no passthrough assumed)
        ({"TERM": "tmux-256color", "TMUX": "/tmp/tmux-0/default,1,0"}, "auto", "blocks"),
        ({"TERM": "screen", "KITTY_WINDOW_ID": "1", "TMUX": "/tmp/t,1,0"}, "auto", "blocks"),
        ({"TERM": "xterm-kitty", "TMUX": "/tmp/t,1,0"}, "auto", "blocks"),
        ({"TERM": "tmux-256color", "TERM_PROGRAM": "tmux"}, "auto", "blocks"),
        # a setting other than auto wins
        ({"TERM": "xterm-kitty"}, "blocks", "blocks"),
        ({"TERM": "xterm-256color"}, "iterm", "iterm"),
        ({"TERM": "xterm-kitty"}, "none", "none"),
    ],
)
def test_mode_from_the_environment(env: dict[str, str], setting: str, mode: str) -> None:
    assert detect_mode(env, setting) == mode


@pytest.mark.parametrize(
    ("size", "bounds", "cells"),
    [
        ((512, 512), (20, 100), (20, 10)),  # square pixels: a cell is two of them
        ((512, 768), (20, 100), (20, 15)),
        ((768, 512), (40, 10), (30, 10)),  # too tall at 40 columns: the rows bound it
        ((64, 4096), (40, 10), (1, 10)),
    ],
)
def test_fit_cells_keeps_the_aspect(
    size: tuple[int, int], bounds: tuple[int, int], cells: tuple[int, int]
) -> None:
    assert fit_cells(*size, *bounds) == cells


def test_kitty_sends_the_png_itself_in_chunks_and_asks_for_no_answer() -> None:
    data = (FIXTURES / "sample.png").read_bytes() * 4  # longer than one chunk
    seq = kitty_sequence(data, lambda: open_image(b""), 10, 5)  # a PNG is never decoded
    parts = seq.split("\x1b\\")[:-1]
    assert len(parts) > 1 and all(p.startswith("\x1b_G") for p in parts)
    assert parts[0].startswith("\x1b_Ga=T,f=100,q=2,C=1,c=10,r=5,m=1;")
    assert parts[-1].startswith("\x1b_Gm=0;")
    payload = "".join(p.split(";", 1)[1] for p in parts)
    assert base64.b64decode(payload) == data  # byte for byte: nothing re-encoded


def test_iterm_sends_the_file_itself() -> None:
    data = (FIXTURES / "sdnext" / "progress.json").read_bytes()[:100]
    seq = iterm_sequence(data, 12, 6)
    assert seq.startswith("\x1b]1337;File=inline=1;size=100;width=12;height=6;")
    assert seq.endswith("\x07")
    assert base64.b64decode(seq[seq.index(":") + 1 : -1]) == data


def test_a_contact_sheet_puts_tiles_side_by_side_with_captions() -> None:
    tiles = [Tile(b"", [f"image {i}", "x" * 50], image=_four_by_four()) for i in range(3)]
    text = draw_tiles(tiles, "blocks", columns=30, tile_columns=8, tile_rows=4)
    screen = pyte.Screen(30, 12)
    pyte.Stream(screen).feed(text.replace("\n", "\r\n"))
    rows = [line.rstrip() for line in screen.display]
    # 30 columns hold three tiles of 8 with a gap of 2: 8+2+8+2+8
    assert rows[0] == "▀" * 8 + "  " + "▀" * 8 + "  " + "▀" * 8
    assert rows[4].split() == ["image", "0", "image", "1", "image", "2"]
    assert rows[5] == ("x" * 7 + "…  ") * 2 + "x" * 7 + "…"


def _sample_with_colour(tmp_path: Path) -> tuple[Path, tuple[int, int, int]]:
    """The captured sample.png (a real infotext), repainted in one colour, its chunks kept."""
    from sdcli import pngmeta

    data = (FIXTURES / "sample.png").read_bytes()
    text = pngmeta.get_parameters(data)
    assert text is not None
    colour = (200, 30, 90)
    image = Image.new("RGB", (64, 64), colour)
    path = tmp_path / "cat.png"
    image.save(path)
    path.write_bytes(pngmeta.with_parameters(path.read_bytes(), text))
    return path, colour


def test_show_draws_the_picture_and_its_parameters_on_a_terminal(tmp_path: Path) -> None:
    path, colour = _sample_with_colour(tmp_path)
    term = Terminal("show", str(path), "--width", "24", columns=60, rows=24)
    try:
        term.wait_for("random-sd15")
        assert term.wait_exit() == 0
        lines = term.lines()
        assert lines[:12] == ["▀" * 24] * 12  # 64x64 at 24 columns: 12 rows of 24 cells
        for row in range(12):
            for x in range(24):
                cell = term.screen.buffer[row][x]
                assert (cell.fg, cell.bg) == (_hex(colour), _hex(colour))
        assert lines[12] == str(path)[:23] + "…"
        assert lines[13:] == ["a cat", "seed 634212383 · 64x64", "random-sd15"]
    finally:
        term.close()


def test_show_prints_nothing_on_stdout_and_no_picture_in_a_pipe(tmp_path: Path) -> None:
    path, _ = _sample_with_colour(tmp_path)
    r = run_sdcli("show", str(path))
    assert r.returncode == 0
    assert r.stdout == ""
    assert r.stderr == f"{path} · a cat · seed 634212383 · 64x64 · random-sd15\n"


def test_show_none_draws_no_picture_on_a_terminal(tmp_path: Path) -> None:
    path, _ = _sample_with_colour(tmp_path)
    term = Terminal("show", str(path), env={"SDCLI_IMAGES": "none"}, columns=100, rows=10)
    try:
        assert term.wait_exit() == 0
        assert "▀" not in term.text()
        assert "a cat · seed 634212383" in term.text()
    finally:
        term.close()


def test_show_a_file_that_is_no_image_exits_2_and_shows_the_others(tmp_path: Path) -> None:
    path, _ = _sample_with_colour(tmp_path)
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    r = run_sdcli("show", str(bad), str(path), str(tmp_path / "missing.png"))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"sdcli: error: {bad}: not an image")
    assert lines[1].startswith(f"{path} · a cat")
    assert lines[2].startswith(f"sdcli: error: cannot read {tmp_path / 'missing.png'}")


def test_a_bad_images_setting_is_refused() -> None:
    r = run_sdcli("show", str(FIXTURES / "sample.png"), env={"SDCLI_IMAGES": "png"})
    assert r.returncode == 2
    assert "SDCLI_IMAGES must be one of auto, kitty, iterm, sixel, blocks, none" in r.stderr


@pytest.mark.parametrize(
    ("env", "start"),
    [
        ({"TERM": "xterm-kitty"}, b"\x1b_Ga=T,f=100,q=2,C=1,"),
        ({"TERM_PROGRAM": "iTerm.app"}, b"\x1b]1337;File=inline=1;size="),
        ({"TERM": "xterm-kitty", "SDCLI_IMAGES": "iterm"}, b"\x1b]1337;File=inline=1;size="),
    ],
)
def test_show_sends_the_file_itself_to_kitty_and_iterm2(
    tmp_path: Path, env: dict[str, str], start: bytes
) -> None:
    path, _ = _sample_with_colour(tmp_path)
    term = Terminal("show", str(path), env=env, columns=80, rows=30)
    try:
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert start in term.raw
    encoded = base64.b64encode(path.read_bytes())
    assert encoded[:3000] in term.raw.replace(b"\x1b\\\x1b_Gm=0;", b"").replace(
        b"\x1b\\\x1b_Gm=1;", b""
    )
    assert "▀".encode() not in term.raw


def test_sixel_without_its_encoder_draws_half_blocks_in_the_same_place(tmp_path: Path) -> None:
    import importlib.util

    path, colour = _sample_with_colour(tmp_path)
    term = Terminal("show", str(path), "--width", "8", env={"SDCLI_IMAGES": "sixel"})
    try:
        assert term.wait_exit() == 0
    finally:
        term.close()
    if importlib.util.find_spec("textual_image") is not None:  # the extra is installed
        assert b"\x1bP" in term.raw and b"\x1b\\" in term.raw
        return
    assert term.lines()[:4] == ["▀" * 8] * 4
    cell = term.screen.buffer[0][0]
    assert (cell.fg, cell.bg) == (_hex(colour), _hex(colour))
    assert term.lines()[5] == "a cat"


def test_kitty_gets_a_jpeg_as_raw_rgb_at_most_20x40_pixels_a_cell() -> None:
    import zlib

    image = Image.new("RGB", (400, 600), (10, 20, 30))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    seq = kitty_sequence(buffer.getvalue(), lambda: image, 5, 3)
    head, _, rest = seq.partition(";")
    assert head.startswith("\x1b_Ga=T,f=24,o=z,s=80,v=120,q=2,C=1,c=5,r=3,")  # 400x600 scaled
    payload = "".join(
        part.partition(";")[2] for part in (head + ";" + rest).split("\x1b\\") if part
    )
    pixels = zlib.decompress(base64.b64decode(payload))
    assert len(pixels) == 80 * 120 * 3
    assert all(abs(a - b) <= 3 for a, b in zip(pixels[:3], (10, 20, 30), strict=True))  # JPEG
