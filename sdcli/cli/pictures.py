"""Pictures in the terminal: which way to draw (detection), and drawing it.

Four ways, best first. Kitty's graphics protocol and iTerm2's inline images carry the image
file itself (base64 of the bytes the server encoded: nothing is re-encoded); Sixel needs a
palette encoder, taken from the optional `textual-image` package; everywhere else, and in
tmux, coloured half-blocks: `▀` with the upper pixel as foreground and the lower one as
background, plain SGR text any terminal with 24-bit colour shows (and any pipe of `less -R`).
The mode comes from the environment only (TERM, TERM_PROGRAM, KITTY_WINDOW_ID, TMUX), never
from a query to the terminal: a query costs a round trip, eats typed-ahead keys and hangs on
terminals that do not answer. Pillow is imported only here, and only when something is drawn.
"""

from __future__ import annotations

import base64
import io
import math
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sdcli.pngmeta import image_size, is_png

if TYPE_CHECKING:
    from PIL.Image import Image

Mode = Literal["kitty", "iterm", "sixel", "blocks", "none"]
UPPER_HALF = "▀"
RESET = "\x1b[0m"
KITTY_CHUNK = 4096  # the protocol's limit for one escape code's payload
ST = b"\x1b\\"  # the string terminator that ends an escape code
KITTY_MORE = ST + b"\x1b_Gm=1;"  # the end of one chunk and the start of the next
KITTY_LAST = ST + b"\x1b_Gm=0;"
MAX_PATH = 1024  # bytes of a path sent for kitty to read (kitty takes up to 2048)
NOT_LOCAL_VARIABLES = ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "container")
CONTAINER_FILES = ("/.dockerenv", "/run/.containerenv")
# What a picture is written as: text (escape codes, half-blocks, captions) through the text
# stream, and image payloads (bytes, or views into them) straight to its binary buffer.
Piece = str | bytes | memoryview
SIXEL_TERMS = ("foot", "mlterm", "contour")  # TERM prefixes of terminals known to draw Sixel


def detect_mode(env: Mapping[str, str], setting: str = "auto") -> Mode:
    """The best way `env`'s terminal can show a picture; `setting` (not "auto") wins.

    tmux (and screen) get half-blocks: an image escape reaches the outer terminal only with
    tmux's passthrough switched on, and even then it does not move with the pane's scrolling.
    """
    if setting != "auto":
        return setting  # type: ignore[return-value]  # checked against MODES by config
    term = env.get("TERM", "")
    program = env.get("TERM_PROGRAM", "")
    if term == "dumb":
        return "none"
    if env.get("TMUX") or term.startswith(("tmux", "screen")) or program == "tmux":
        return "blocks"
    if (
        env.get("KITTY_WINDOW_ID")
        or term in ("xterm-kitty", "xterm-ghostty")
        or program
        in (
            "kitty",
            "ghostty",
        )
    ):
        return "kitty"
    if program in ("iTerm.app", "WezTerm") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if term.startswith(SIXEL_TERMS):
        return "sixel"
    return "blocks"


def fit_cells(width: int, height: int, max_columns: int, max_rows: int) -> tuple[int, int]:
    """(columns, rows) of the largest box of `width`:`height` within the bounds.

    A terminal cell is about twice as tall as wide, so one cell holds two square pixels of a
    half-block picture: a 512x768 image at 20 columns is 30 pixel rows, 15 cell rows.
    """
    width, height = max(width, 1), max(height, 1)
    columns = max(1, max_columns)
    rows = math.ceil(columns * height / width / 2)
    if rows > max_rows:
        rows = max(1, max_rows)
        columns = max(1, min(columns, round(rows * 2 * width / height)))
    return columns, rows


def open_image(data: bytes, *, fit: tuple[int, int] | None = None) -> Image:
    """Decode `data` (PNG, JPEG, WebP…) with Pillow; raises ValueError for anything else.

    With `fit` (pixels), a JPEG is decoded at the smallest of 1/2, 1/4, 1/8 that still covers it
    (Pillow's draft mode): a thumbnail of SD.Next's JPEGs costs a fraction of a full decode.
    """
    import warnings

    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
            if fit is not None:
                image.draft("RGB", fit)
            image.load()
    except Exception as exc:  # Pillow has many ways to say "not an image"
        raise ValueError(f"not an image Pillow can read ({exc})") from exc
    return image


def scaled_rgb(image: Image, width: int, height: int) -> Image:
    """`image` at `width` x `height` pixels, RGB (transparency over black)."""
    from PIL import Image as PILImage

    if image.mode != "RGB":
        image = image.convert("RGBA").convert("RGB") if "A" in image.mode else image.convert("RGB")
    if image.size == (width, height):
        return image
    # BOX averages each source block: right for shrinking, and reducing_gap keeps it cheap.
    return image.resize((width, height), PILImage.Resampling.BOX, reducing_gap=2.0)


def halfblock_lines(image: Image, columns: int, rows: int) -> list[str]:
    """`rows` lines of `columns` cells; a cell's fg is its upper pixel, its bg the lower one."""
    small = scaled_rgb(image, columns, rows * 2)
    data = small.tobytes()
    stride = columns * 3
    lines = []
    for row in range(rows):
        top = data[2 * row * stride : (2 * row + 1) * stride]
        bottom = data[(2 * row + 1) * stride : (2 * row + 2) * stride]
        parts = []
        last: tuple[bytes, bytes] | None = None
        for x in range(0, stride, 3):
            cell = (top[x : x + 3], bottom[x : x + 3])
            if cell != last:  # a run of one colour needs its SGR once
                (r, g, b), (r2, g2, b2) = cell
                parts.append(f"\x1b[38;2;{r};{g};{b};48;2;{r2};{g2};{b2}m")
                last = cell
            parts.append(UPPER_HALF)
        parts.append(RESET)
        lines.append("".join(parts))
    return lines


def base64_text(data: bytes, encoded: str = "") -> memoryview:
    """`data` in base64, as bytes: the server's own text of it when there is one (bare or a
    data URL, checked when the answer was parsed), else encoded here, once."""
    if not encoded:
        return memoryview(base64.standard_b64encode(data))
    raw = encoded.encode("ascii")  # one copy, and no encoding: the text is base64 already
    return memoryview(raw)[raw.index(b",") + 1 if raw.startswith(b"data:") else 0 :]


def kitty_sequence(tile: Tile, columns: int, rows: int) -> list[Piece]:
    """Kitty's graphics protocol: the PNG as sent by the server (JPEG and others as raw RGB),
    or, with `tile.path`, only the file's path for kitty to read (`t=f`, see kitty_reads_files).

    `q=2` keeps the terminal from answering on stdin; `C=1` leaves the cursor where it was, so
    the caller places the picture in space it reserved.
    """
    place = f"q=2,C=1,c={columns},r={rows}"
    if is_png(tile.data):
        if tile.path is not None:
            path = base64.standard_b64encode(os.fsencode(tile.path))
            return [f"\x1b_Ga=T,f=100,t=f,{place};", path, ST]
        return kitty_chunks(f"a=T,f=100,{place}", base64_text(tile.data, tile.encoded))
    import zlib

    # a picture `columns` x `rows` cells never needs more than ~20x10 pixels a cell
    pixels = tile.image
    scale = min(1.0, columns * 20 / pixels.width, rows * 40 / pixels.height)
    w, h = max(1, round(pixels.width * scale)), max(1, round(pixels.height * scale))
    rgb = zlib.compress(scaled_rgb(pixels, w, h).tobytes(), 1)
    return kitty_chunks(f"a=T,f=24,o=z,s={w},v={h},{place}", base64_text(rgb))


def kitty_chunks(head: str, payload: memoryview) -> list[Piece]:
    """`payload` in escape codes of at most KITTY_CHUNK bytes each (a multiple of 4, as the
    protocol asks of all but the last), `m=1` on all but the last: slices, not copies."""
    size = len(payload)
    pieces: list[Piece] = [f"\x1b_G{head},m={int(size > KITTY_CHUNK)};", payload[:KITTY_CHUNK]]
    for start in range(KITTY_CHUNK, size, KITTY_CHUNK):
        pieces.append(KITTY_LAST if start + KITTY_CHUNK >= size else KITTY_MORE)
        pieces.append(payload[start : start + KITTY_CHUNK])
    pieces.append(ST)
    return pieces


def iterm_sequence(tile: Tile, columns: int, rows: int) -> list[Piece]:
    """iTerm2's inline image (also WezTerm, VS Code with images on): the file's own bytes."""
    payload = base64_text(tile.data, tile.encoded)
    size = len(payload) // 4 * 3 - bytes(payload[-2:]).count(b"=")
    args = f"inline=1;size={size};width={columns};height={rows};preserveAspectRatio=1"
    return [f"\x1b]1337;File={args}:", payload, b"\x07"]


def kitty_reads_files(env: Mapping[str, str]) -> bool:
    """Whether the terminal is kitty itself, on this machine, reading files as this user: then
    a saved PNG goes by its path (`t=f`) and no image bytes are written at all.

    Kitty sets KITTY_PID and KITTY_WINDOW_ID for what runs in it; `kitten ssh` passes on only
    the window id, plain ssh neither, and sshd sets SSH_CONNECTION/SSH_CLIENT/SSH_TTY. Kitty
    sets no TERM_PROGRAM, so one (WezTerm, VS Code… started from a kitty shell) means another
    terminal, maybe one that speaks the protocol without reading files. A container may share
    the variables but not the files; root may write what kitty's user cannot read. Every
    doubt means no: a wrong yes shows no picture (kitty fails silently with q=2), a wrong no
    only costs the bytes.
    """
    pid = env.get("KITTY_PID", "")
    if not (pid.isdigit() and env.get("KITTY_WINDOW_ID")) or env.get("TERM_PROGRAM"):
        return False
    if any(env.get(name) for name in NOT_LOCAL_VARIABLES):
        return False
    return not running_as_root() and not in_container() and is_ours(int(pid))


def running_as_root() -> bool:
    return getattr(os, "geteuid", lambda: 0)() == 0


def in_container() -> bool:
    """Docker's and Podman's marker files: the terminal is outside, with other files."""
    return any(os.path.exists(marker) for marker in CONTAINER_FILES)


def is_ours(pid: int) -> bool:
    """A live process of this user (another user's is a PermissionError)."""
    try:
        os.kill(pid, 0)
    except (OSError, OverflowError):
        return False
    return True


def file_for_kitty(path: Path | str) -> str | None:
    """`path` as kitty reads it (`t=f`): absolute, a regular file outside /proc, /sys and /dev
    (which kitty refuses), short enough for one escape code; None for anything else."""
    try:
        real = os.path.realpath(path)
        if not stat.S_ISREG(os.stat(real).st_mode):
            return None
    except (OSError, ValueError):
        return None
    if real.split(os.sep)[1] in ("proc", "sys", "dev") or len(os.fsencode(real)) > MAX_PATH:
        return None
    return real


def sixel_sequence(image: Image, columns: int, rows: int) -> str | None:
    """Sixel from the optional `textual-image` package (`pip install 'sdcli[sixel]'`); None
    without it. Assumes 10x20-pixel cells, the VT340's, when the terminal does not say."""
    try:
        from rich.console import Console
        from textual_image.renderable.sixel import (  # type: ignore[import-not-found,unused-ignore]
            Image as SixelImage,
        )
    except ImportError:
        return None
    console = Console(file=io.StringIO(), force_terminal=True, width=columns + 1, color_system=None)
    with console.capture() as capture:
        console.print(SixelImage(image, width=columns, height=rows), end="")
    text = capture.get()
    start = text.find("\x1bP")
    end = text.find("\x1b\\", start)
    return text[start : end + 2] if start >= 0 and end > start else None


class Tile:
    """One picture to draw: its file bytes, its size, the caption lines under it; decoded only
    when a mode needs the pixels (half-blocks, Sixel, a non-PNG for Kitty). `encoded`: the
    server's base64 of the same image, sent as it is; `path`: a file kitty may read itself
    (file_for_kitty), given only when kitty_reads_files."""

    def __init__(
        self,
        data: bytes,
        caption: Sequence[str] = (),
        image: Image | None = None,
        *,
        encoded: str = "",
        path: str | None = None,
    ):
        self.data = data
        self.caption = caption
        self.encoded = encoded
        self.path = path
        self._image = image
        size = image.size if image is not None else image_size(data)
        if size is None:  # WebP, GIF, a JPEG without a frame header: ask Pillow
            size = self.image.size
        self.width, self.height = size

    @property
    def image(self) -> Image:
        if self._image is None:
            self._image = open_image(self.data)
        return self._image

    def pixels(self, columns: int, rows: int) -> Image:
        """Decoded for a picture of `columns` x `rows` cells (a JPEG at a reduced scale)."""
        if self._image is None:
            self._image = open_image(self.data, fit=(columns, rows * 2))
        return self._image


def thumbnail(
    data: bytes,
    mode: Mode,
    *,
    columns: int,
    rows: int,
    encoded: str = "",
    path: str | None = None,
) -> list[Piece]:
    """One picture of `data` within `columns` x `rows`, no caption: what follows a saved path.
    Empty when the bytes cannot be shown (a picture is never worth an error)."""
    try:
        tile = Tile(data, encoded=encoded, path=path)
        return draw_tiles([tile], mode, columns=columns, tile_columns=columns, tile_rows=rows)
    except ValueError:
        return []


def draw_tiles(
    tiles: Sequence[Tile],
    mode: Mode,
    *,
    columns: int,
    tile_columns: int,
    tile_rows: int,
    gap: int = 2,
) -> list[Piece]:
    """A contact sheet: as many tiles a row as fit in `columns`, each caption under its tile
    (render.picture writes it).

    Every row of the sheet is first reserved as blank lines (so drawing never scrolls the
    screen under a picture), then each picture is placed with the cursor saved and restored.
    """
    if mode == "none" or not tiles:
        return []
    per_row = max(1, (columns + gap) // (tile_columns + gap))
    if mode == "sixel":
        per_row = 1  # a Sixel moves the cursor by pixels: side by side is not reliable
    out: list[Piece] = []
    for start in range(0, len(tiles), per_row):
        row_tiles = tiles[start : start + per_row]
        sized = [(t, *fit_cells(t.width, t.height, tile_columns, tile_rows)) for t in row_tiles]
        height = max(r for _, _, r in sized)
        if mode == "blocks":
            blocks = [halfblock_lines(t.pixels(c, r), c, r) for t, c, r in sized]
            for line in range(height):
                cells = []
                for (_, c, _), lines in zip(sized, blocks, strict=True):
                    cells.append(lines[line] if line < len(lines) else " " * c)
                    cells.append(" " * (tile_columns - c + gap))
                out.append("".join(cells).rstrip() + "\n")
        else:
            out.append("\n" * height + f"\x1b[{height}A")
            for i, (tile, c, r) in enumerate(sized):
                x = i * (tile_columns + gap)
                out.append("\r" + (f"\x1b[{x}C" if x else "") + "\x1b7")
                out.extend(_protocol(mode, tile, c, r))
                out.append("\x1b8")
            out.append(f"\r\x1b[{height}B")
        out.extend(_captions([t.caption for t in row_tiles], tile_columns, gap))
    return out


def _protocol(mode: Mode, tile: Tile, columns: int, rows: int) -> list[Piece]:
    if mode == "kitty":
        return kitty_sequence(tile, columns, rows)
    if mode == "iterm":
        return iterm_sequence(tile, columns, rows)
    sixel = sixel_sequence(tile.image, columns, rows)
    if sixel is None:  # no encoder installed: draw the blocks in the space reserved
        lines = halfblock_lines(tile.pixels(columns, rows), columns, rows)
        return ["".join(line + f"\x1b[{columns}D\x1b[1B" for line in lines)]
    return [sixel]


def _captions(captions: Sequence[Sequence[str]], width: int, gap: int) -> list[str]:
    from rich.cells import cell_len, set_cell_size

    lines = []
    for i in range(max((len(c) for c in captions), default=0)):
        parts = []
        for caption in captions:
            text = caption[i] if i < len(caption) else ""
            if cell_len(text) > width:
                text = set_cell_size(text, width - 1) + "…"
            parts.append(set_cell_size(text, width) + " " * gap)
        lines.append("".join(parts).rstrip() + "\n")
    return lines
