"""Pictures in the terminal: half-blocks cell by cell, the mode from the environment, `show`."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyte
import pytest
from PIL import Image

from sdcli.cli import pictures
from sdcli.cli.pictures import (
    Piece,
    Tile,
    detect_mode,
    draw_tiles,
    file_for_kitty,
    fit_cells,
    halfblock_lines,
    iterm_sequence,
    kitty_reads_files,
    kitty_sequence,
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


def _bytes(pieces: list[Piece]) -> bytes:
    """A picture's pieces as the terminal gets them."""
    return b"".join(p.encode() if isinstance(p, str) else bytes(p) for p in pieces)


def _small_png() -> bytes:
    buffer = io.BytesIO()
    _four_by_four().save(buffer, "PNG")
    return buffer.getvalue()


def test_kitty_gets_a_small_png_in_one_escape_code_exactly() -> None:
    data = _small_png()
    seq = _bytes(kitty_sequence(Tile(data), 10, 5))
    payload = base64.standard_b64encode(data)
    assert len(payload) <= 4096
    assert seq == b"\x1b_Ga=T,f=100,q=2,C=1,c=10,r=5,m=0;" + payload + b"\x1b\\"


def test_kitty_chunks_are_at_most_4096_bytes_m1_then_m0_and_decode_to_the_file() -> None:
    data = (FIXTURES / "sample.png").read_bytes() * 4  # 38,724 bytes: 13 chunks of base64
    text = base64.standard_b64encode(data)
    chunks = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    expected = b"\x1b_Ga=T,f=100,q=2,C=1,c=10,r=5,m=1;" + chunks[0] + b"\x1b\\"
    expected += b"".join(b"\x1b_Gm=1;" + c + b"\x1b\\" for c in chunks[1:-1])
    expected += b"\x1b_Gm=0;" + chunks[-1] + b"\x1b\\"
    # a PNG is never decoded for Kitty: Tile reads its size from the header
    seq = _bytes(kitty_sequence(Tile(data), 10, 5))
    assert seq == expected
    parts = seq.split(b"\x1b\\")[:-1]
    assert len(parts) == 13 and all(len(p.partition(b";")[2]) <= 4096 for p in parts)
    assert all(len(p.partition(b";")[2]) % 4 == 0 for p in parts[:-1])  # as the spec asks
    assert base64.b64decode(b"".join(p.partition(b";")[2] for p in parts)) == data


def _saved_and_sent() -> tuple[bytes, bytes]:
    """A PNG as the server sent it, and as sdcli saved it (its parameters chunk added)."""
    from sdcli import pngmeta

    sent = _small_png()
    return pngmeta.with_parameters(sent, "a cat\nSteps: 20, Seed: 1"), sent


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,"])
def test_kitty_and_iterm2_send_the_servers_own_base64_text(prefix: str) -> None:
    saved, sent = _saved_and_sent()
    assert saved != sent
    text = base64.standard_b64encode(sent)
    tile = Tile(saved, encoded=prefix + text.decode())
    kitty = _bytes(kitty_sequence(tile, 10, 5))
    assert kitty == b"\x1b_Ga=T,f=100,q=2,C=1,c=10,r=5,m=0;" + text + b"\x1b\\"
    iterm = _bytes(iterm_sequence(tile, 12, 6))
    head = f"\x1b]1337;File=inline=1;size={len(sent)};width=12;height=6;preserveAspectRatio=1:"
    assert iterm == head.encode() + text + b"\x07"


def test_iterm_sends_the_file_itself() -> None:
    data = _small_png()
    seq = _bytes(iterm_sequence(Tile(data), 12, 6))
    head = f"\x1b]1337;File=inline=1;size={len(data)};width=12;height=6;preserveAspectRatio=1:"
    assert seq == head.encode() + base64.standard_b64encode(data) + b"\x07"


def test_kitty_on_this_machine_is_sent_the_path_alone(tmp_path: Path) -> None:
    data = _small_png()
    (tmp_path / "cat.png").write_bytes(data)
    path = file_for_kitty(tmp_path / "cat.png")
    assert path == os.path.realpath(tmp_path / "cat.png")
    seq = _bytes(kitty_sequence(Tile(data, path=path), 10, 5))
    encoded = base64.standard_b64encode(os.fsencode(path))
    assert seq == b"\x1b_Ga=T,f=100,t=f,q=2,C=1,c=10,r=5;" + encoded + b"\x1b\\"


def test_only_a_regular_file_outside_proc_sys_dev_goes_by_path(tmp_path: Path) -> None:
    assert file_for_kitty(tmp_path) is None  # a directory
    assert file_for_kitty(tmp_path / "missing.png") is None
    assert file_for_kitty("/dev/null") is None
    assert file_for_kitty("/proc/self/status") is None
    (tmp_path / "cat.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "cat.png")
    assert file_for_kitty(tmp_path / "link.png") == os.path.realpath(tmp_path / "cat.png")
    deep = tmp_path.joinpath(*(c * 200 for c in "abcdef"))  # kitty takes 2,048 bytes at most
    deep.mkdir(parents=True)
    (deep / "cat.png").write_bytes(b"x")
    assert file_for_kitty(deep / "cat.png") is None


KITTY_HERE = {"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1", "KITTY_PID": str(os.getpid())}


@pytest.fixture
def a_plain_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own machine: not root, not in a container (this test may run in either)."""
    monkeypatch.setattr(pictures, "running_as_root", lambda: False)
    monkeypatch.setattr(pictures, "in_container", lambda: False)


@pytest.mark.usefixtures("a_plain_machine")
@pytest.mark.parametrize(
    ("env", "reads"),
    [
        (KITTY_HERE, True),
        ({**KITTY_HERE, "TERM": "xterm-256color"}, True),  # kitty with `term` changed
        ({"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1"}, False),  # kitten ssh: no KITTY_PID
        ({"TERM": "xterm-kitty", "KITTY_PID": str(os.getpid())}, False),
        ({**KITTY_HERE, "SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22"}, False),
        ({**KITTY_HERE, "SSH_CLIENT": "10.0.0.2 50000 22"}, False),
        ({**KITTY_HERE, "SSH_TTY": "/dev/pts/3"}, False),
        ({**KITTY_HERE, "container": "podman"}, False),
        ({**KITTY_HERE, "TERM_PROGRAM": "WezTerm"}, False),  # WezTerm started from kitty
        ({**KITTY_HERE, "KITTY_PID": "x12"}, False),
        ({"TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty"}, False),  # speaks, no docs on t=f
        ({"TERM_PROGRAM": "iTerm.app"}, False),
    ],
)
def test_kitty_reads_files_only_when_it_is_kitty_on_this_machine(
    env: dict[str, str], reads: bool
) -> None:
    assert kitty_reads_files(env) is reads


@pytest.mark.usefixtures("a_plain_machine")
def test_kitty_reads_no_files_for_a_kitty_that_is_gone_root_or_a_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not kitty_reads_files({**KITTY_HERE, "KITTY_PID": str(gone.pid)})
    assert not kitty_reads_files({**KITTY_HERE, "KITTY_PID": str(2**40)})
    monkeypatch.setattr(pictures, "running_as_root", lambda: True)
    assert not kitty_reads_files(KITTY_HERE)
    monkeypatch.setattr(pictures, "running_as_root", lambda: False)
    monkeypatch.setattr(pictures, "in_container", lambda: True)
    assert not kitty_reads_files(KITTY_HERE)


def test_write_all_resumes_inside_a_piece_after_a_short_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sdcli.cli import render

    pieces: list[bytes | memoryview] = [b"head;", memoryview(b"x" * 5000)[1000:], b"", b"end"]
    read, write = os.pipe()
    real_writev = os.writev
    calls = []

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        calls.append(len(buffers))
        return real_writev(fd, [bytes(b"".join(buffers))[:777]])  # at most 777 bytes a call

    monkeypatch.setattr(os, "writev", short_writev)
    render.write_all(write, pieces)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        assert pipe.read() == b"head;" + b"x" * 4000 + b"end"
    assert len(calls) == 6  # 4,008 bytes, 777 at a time


@pytest.mark.parametrize("sequence", [kitty_sequence, iterm_sequence])
def test_ctrl_c_during_a_picture_lets_it_end_then_interrupts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sequence: Any
) -> None:
    """SIGINT after a short write (a terminal reading megabytes of base64): the escape sequence
    is finished before KeyboardInterrupt goes up, or the terminal would read what follows (the
    error line, the prompt) as image data."""
    import signal

    from sdcli.cli import render

    data = (FIXTURES / "sample.png").read_bytes() * 4  # Kitty: 13 chunks
    pieces = sequence(Tile(data), 10, 5)
    out = tmp_path / "stderr"
    stream = io.TextIOWrapper(io.FileIO(out, "w"), encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", stream)
    real_writev = os.writev
    pressed: list[bool] = []

    def interrupted_writev(fd: int, buffers: list[memoryview]) -> int:
        if pressed:  # one Ctrl-C (a second one quits at once: errors.interruptions_held)
            return real_writev(fd, buffers)
        written = real_writev(fd, [bytes(buffers[0])[:1000]])  # a short write, then Ctrl-C
        pressed.append(True)
        signal.raise_signal(signal.SIGINT)
        return written

    monkeypatch.setattr(os, "writev", interrupted_writev)
    with pytest.raises(KeyboardInterrupt):
        render.picture(pieces)
    stream.close()
    assert out.read_bytes() == _bytes(pieces)  # whole, ST (Kitty) or BEL (iTerm2) at its end


def test_a_contact_sheet_puts_tiles_side_by_side_with_captions() -> None:
    tiles = [Tile(b"", [f"image {i}", "x" * 50], image=_four_by_four()) for i in range(3)]
    text = "".join(
        str(p) for p in draw_tiles(tiles, "blocks", columns=30, tile_columns=8, tile_rows=4)
    )
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
    seq = _bytes(kitty_sequence(Tile(buffer.getvalue(), image=image), 5, 3)).decode()
    head, _, rest = seq.partition(";")
    assert head.startswith("\x1b_Ga=T,f=24,o=z,s=80,v=120,q=2,C=1,c=5,r=3,")  # 400x600 scaled
    payload = "".join(
        part.partition(";")[2] for part in (head + ";" + rest).split("\x1b\\") if part
    )
    pixels = zlib.decompress(base64.b64decode(payload))
    assert len(pixels) == 80 * 120 * 3
    assert all(abs(a - b) <= 3 for a, b in zip(pixels[:3], (10, 20, 30), strict=True))  # JPEG


@pytest.mark.parametrize("by_path", [True, False])
def test_the_thumbnail_sink_writes_after_the_text_before_it_and_kitty_here_gets_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by_path: bool
) -> None:
    from sdcli.cli.thumbnails import Thumbnails
    from sdcli.events import GridSaved

    data = _small_png()
    path = tmp_path / "grid.png"
    path.write_bytes(data)
    monkeypatch.setattr(pictures, "kitty_reads_files", lambda env: by_path)
    monkeypatch.setenv("COLUMNS", "100")  # a pipe has no width: 40 columns, the most
    read, write = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write, "w"), encoding="utf-8", line_buffering=True)
    monkeypatch.setattr(sys, "stderr", stream)
    stream.write("out/grid.png ")  # no newline: still in the text layer
    Thumbnails("kitty")(GridSaved(path, "a cat", None, "steps", 4, data=data))
    stream.close()
    with os.fdopen(read, "rb") as pipe:
        written = pipe.read()
    # the picture of a square at 40 columns: 20 x 10 cells, reserved first
    assert written.startswith(b"out/grid.png " + b"\n" * 10 + b"\x1b[10A\r\x1b7\x1b_Ga=T,f=100,")
    assert written.endswith(b"\x1b8\r\x1b[10B")
    if by_path:
        name = base64.standard_b64encode(str(path.resolve()).encode())
        assert b",t=f,q=2,C=1,c=20,r=10;" + name + b"\x1b\\\x1b8" in written
        assert base64.standard_b64encode(data) not in written
    else:
        assert b";" + base64.standard_b64encode(data) + b"\x1b\\\x1b8" in written
