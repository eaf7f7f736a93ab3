"""Real PNG files, fast: seeded noise over colour gradients, sized and chunked like PIL's output.

Speed comes from a per-width pool of pre-filtered, pre-compressed bands of scanlines. Each band
is raw deflate ending on a full flush, so any sequence of bands concatenates into one valid zlib
stream; a seeded random walk over the pool picks the sequence, so every seed gives its own image
while a 1024x1024 image costs a join, a CRC and an Adler-32 combine.
"""

from __future__ import annotations

import functools
import math
import random
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BAND_ROWS = 8
POOL_BANDS = 48
NOISE = 10  # amplitude of the per-byte noise: Sub-filtered rows compress to about 55%
IDAT_SIZE = 65536  # PIL writes IDAT chunks of this size
_ADLER_MOD = 65521
_NOISE_TABLE = bytes((i * NOISE) >> 8 for i in range(256))


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_chunk(key: str, value: str) -> bytes:
    """PIL's rule: tEXt when the value is Latin-1, otherwise an uncompressed UTF-8 iTXt."""
    try:
        return chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        body = key.encode("latin-1") + b"\0\0\0" + b"\0" + b"\0" + value.encode("utf-8")
        return chunk(b"iTXt", body)


def _adler_combine(first: int, second: int, second_len: int) -> int:
    """Adler-32 of A+B from those of A and B (the sums just shift by len(B) * (a_A - 1))."""
    a1, b1 = first & 0xFFFF, first >> 16
    a2, b2 = second & 0xFFFF, second >> 16
    a = (a1 + a2 - 1) % _ADLER_MOD
    b = (b1 + b2 + second_len * (a1 - 1)) % _ADLER_MOD
    return (b << 16) | a


def _sub_filter(row: bytes) -> bytes:
    """PNG filter 1 (Sub, 3 bytes per pixel) on whole rows at once, via 16-bit lanes of big ints."""
    n = len(row)
    lanes = bytearray(2 * n)
    lanes[1::2] = row
    prev = bytearray(2 * n)
    prev[7::2] = row[:-3]
    bias = bytearray(2 * n)
    bias[0::2] = b"\x01" * n  # +256 per lane so no lane ever borrows from its neighbour
    total = int.from_bytes(lanes, "big") + int.from_bytes(bias, "big") - int.from_bytes(prev, "big")
    return b"\x01" + total.to_bytes(2 * n, "big")[1::2]


def _lanes(values: list[int]) -> int:
    """Values as one big int of 16-bit lanes, so arithmetic acts on all of them at once."""
    return int.from_bytes(struct.pack(f">{len(values)}H", *values), "big")


@functools.lru_cache(maxsize=16)
def _ramps(width: int) -> tuple[int, int, tuple[tuple[int, ...], ...]]:
    """Per-width weights (left/right, summing to 255) and a few wavy patterns per channel."""
    span = max(width - 1, 1)
    down = [255 - x * 255 // span for x in range(width)]
    up = [255 - d for d in down]
    waves = tuple(
        tuple(
            _lanes([int(24 * (1 + math.sin(freq * x + c * 2.1 + k))) * 255 for x in range(width)])
            for c in range(3)
        )
        for k, freq in enumerate(math.pi * f / width for f in (3.0, 5.0, 7.0, 9.0))
    )
    return _lanes(down), _lanes(up), waves


def _colour(t: float, phase: float) -> list[int]:
    return [int(112 + 80 * math.sin(2 * math.pi * t + phase + k * 2.1)) for k in range(3)]


@dataclass(frozen=True)
class _Band:
    raw: bytes  # filtered scanlines, as the zlib stream's uncompressed content
    packed: bytes  # raw deflate of `raw`, ending on a full flush
    adler: int


def _make_band(width: int, index: int, rng: random.Random) -> bytes:
    """BAND_ROWS filtered scanlines: a horizontal gradient with a wave, plus fresh noise per row."""
    down, up, waves = _ramps(width)
    t = index / POOL_BANDS
    left, right = _colour(t, 0.0), _colour(t + 0.3, 1.3)
    wave = waves[index * len(waves) // POOL_BANDS]
    base = bytearray(3 * width)
    for c in range(3):
        # lanes stay below 192*255 + 48*255 < 65536; the high byte is the 8-bit channel value
        lanes = left[c] * down + right[c] * up + wave[c]
        base[c::3] = lanes.to_bytes(2 * width, "big")[0::2]
    base_int = int.from_bytes(base, "big")
    rows = []
    for _ in range(BAND_ROWS):
        noise = rng.randbytes(3 * width).translate(_NOISE_TABLE)
        pixels = (base_int + int.from_bytes(noise, "big")).to_bytes(3 * width, "big")
        rows.append(_sub_filter(pixels))
    return b"".join(rows)


def _pack(raw: bytes) -> _Band:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return _Band(raw, comp.compress(raw) + comp.flush(zlib.Z_FULL_FLUSH), zlib.adler32(raw))


_pool_lock = threading.Lock()


@functools.lru_cache(maxsize=16)
def _pool(width: int) -> tuple[_Band, ...]:
    rng = random.Random(width * 7919 + 1)
    return tuple(_pack(_make_band(width, i, rng)) for i in range(POOL_BANDS))


@functools.lru_cache(maxsize=64)
def _tail(width: int, index: int, rows: int) -> _Band:
    row_len = 3 * width + 1
    return _pack(_pool(width)[index].raw[: rows * row_len])


def _walk(seed: int, count: int) -> Iterator[int]:
    rng = random.Random(seed)
    pos = rng.randrange(POOL_BANDS)
    for _ in range(count):
        yield pos
        pos = (pos + rng.choice((-1, 0, 1, 1, 2))) % POOL_BANDS


def _idat_stream(width: int, height: int, seed: int) -> bytes:
    with _pool_lock:  # building a pool twice in parallel would only waste time
        pool = _pool(width)
    full, rest = divmod(height, BAND_ROWS)
    order = list(_walk(seed, full + (1 if rest else 0)))
    bands = [pool[i] for i in order[:full]]
    if rest:
        bands.append(_tail(width, order[-1], rest))
    adler = 1
    for band in bands:
        adler = _adler_combine(adler, band.adler, len(band.raw))
    final = zlib.compressobj(6, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    body = b"".join(band.packed for band in bands)
    return b"\x78\x9c" + body + final + struct.pack(">I", adler)


def encode_png(width: int, height: int, seed: int, *, text: dict[str, str] | None = None) -> bytes:
    """A valid 8-bit RGB PNG of width x height for this seed, text chunks before IDAT like PIL."""
    if width < 1 or height < 1:
        raise ValueError(f"cannot draw a {width}x{height} image")
    stream = _idat_stream(width, height, seed & 0xFFFFFFFFFFFF)
    parts = [PNG_SIGNATURE, chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        parts.append(text_chunk(key, value))
    for start in range(0, len(stream), IDAT_SIZE):
        parts.append(chunk(b"IDAT", stream[start : start + IDAT_SIZE]))
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


# --- reading ---------------------------------------------------------------------------------


class NotAnImage(ValueError):
    """Bytes that no image decoder would open."""


_OTHER_FORMATS = (b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise NotAnImage("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def read_text_chunks(data: bytes) -> dict[str, str]:
    """Text chunks of an image as PIL's `image.info` would show them; raises NotAnImage."""
    if data.startswith(_OTHER_FORMATS) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return {}
    if not data.startswith(PNG_SIGNATURE) or len(data) < 33:
        raise NotAnImage("not a PNG")
    found: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"tEXt":
                key, _, value = body.partition(b"\0")
                found[key.decode("latin-1")] = value.decode("latin-1")
            elif kind == b"zTXt":
                key, _, value = body.partition(b"\0")
                found[key.decode("latin-1")] = zlib.decompress(value[1:]).decode("latin-1")
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _tkey, _, value = rest.partition(b"\0")
                text = zlib.decompress(value) if compressed else value
                found[key.decode("latin-1")] = text.decode("utf-8")
            elif kind == b"IEND":
                break
        except (zlib.error, UnicodeDecodeError, IndexError):
            continue
    return found
