"""Real JPEG files without Pillow, laid out like SD.Next's: JFIF, then EXIF with the infotext.

SD.Next saves JPEG by default and writes the infotext into the EXIF UserComment (piexif: an
8-byte `UNICODE\\0` header, then UTF-16 big-endian). The pixels are flat 8x8 blocks whose
brightness walks with the seed: a baseline JPEG whose AC coefficients are all zero needs only
the DC differences, so any size costs a few bit-string joins.
"""

from __future__ import annotations

import random
import struct

_DC_BITS = 4  # every DC category has a 4-bit code (0000..1011): one flat Huffman table
_EOB = "0"  # the AC table's only symbol: end of block


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">HH", marker, len(body) + 2) + body


def exif_user_comment(text: str) -> bytes:
    """An APP1 Exif segment holding only ExifIFD -> UserComment, big-endian like piexif."""
    comment = b"UNICODE\0" + text.encode("utf-16-be")
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    # piexif writes no next-IFD link after the Exif IFD: its data starts right after the entry
    exif_ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x9286, 7, len(comment), 40)
    tiff = b"MM\0*" + struct.pack(">I", 8) + ifd0 + exif_ifd + comment
    return _segment(0xFFE1, b"Exif\0\0" + tiff)


def _huffman_tables() -> bytes:
    dc = bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12))
    ac = bytes([1] + [0] * 15) + b"\0"
    body = b""
    for table_id in (0, 1):
        body += bytes([0x00 | table_id]) + dc + bytes([0x10 | table_id]) + ac
    return _segment(0xFFC4, body)


def _dc_code(diff: int) -> str:
    if diff == 0:
        return "0000"
    size = abs(diff).bit_length()
    value = diff if diff > 0 else diff + (1 << size) - 1
    return format(size, f"0{_DC_BITS}b") + format(value, f"0{size}b")


def _scan(width: int, height: int, seed: int) -> bytes:
    rng = random.Random(seed)
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    chroma = "0000" + _EOB  # Cb and Cr stay flat: a grey picture
    level, parts = 0, []
    steps = (-6, -3, 0, 3, 6)
    for _ in range(blocks):
        diff = rng.choice(steps)
        if not -60 <= level + diff <= 60:
            diff = -diff
        level += diff
        parts.append(_dc_code(diff) + _EOB + chroma + chroma)
    bits = "".join(parts)
    bits += "1" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return data.replace(b"\xff", b"\xff\x00")


def encode_jpeg(width: int, height: int, seed: int, *, comment: str | None = None) -> bytes:
    """A baseline 8-bit YCbCr JPEG of width x height; `comment` goes into the EXIF UserComment."""
    if width < 1 or height < 1:
        raise ValueError(f"cannot draw a {width}x{height} image")
    jfif = _segment(0xFFE0, b"JFIF\0\x01\x01\0" + struct.pack(">HH", 1, 1) + b"\0\0")
    exif = exif_user_comment(comment) if comment is not None else b""
    quant = _segment(0xFFDB, b"\0" + bytes([16] * 64))
    frame = _segment(
        0xFFC0,
        struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]),
    )
    scan = _segment(0xFFDA, bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]))
    return (
        b"\xff\xd8"
        + jfif
        + exif
        + quant
        + frame
        + _huffman_tables()
        + scan
        + _scan(width, height, seed & 0xFFFFFFFFFFFF)
        + b"\xff\xd9"
    )
