"""PNG text chunks on raw bytes: read the infotext, or splice it in without touching the pixels.

The server's PNG bytes are saved as they arrive; when the `parameters` chunk is missing we add one
chunk to the byte stream instead of decoding and re-encoding the image (DESIGN.md, "Images").
Only `read_parameters_from_file` needs Pillow (for JPEG/WebP EXIF), and imports it lazily.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

from sdcli.errors import UsageError

__all__ = [
    "PNG_SIGNATURE",
    "NotPngError",
    "TextNotStorable",
    "get_parameters",
    "image_size",
    "is_png",
    "iter_chunks",
    "parameters_from_bytes",
    "png_size",
    "read_parameters_from_file",
    "read_text_chunks",
    "sniff_image_format",
    "with_parameters",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PARAMETERS = "parameters"
_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
_MAX_CHUNK_LENGTH = 2**31 - 1  # PNG spec limit
_MAX_TEXT_BYTES = 16 * 1024 * 1024  # cap on a decompressed text chunk: no zip bombs
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


class NotPngError(UsageError):
    """The bytes are not a (well-formed) PNG, or a file holds no image we can read metadata from."""


def is_png(data: bytes) -> bool:
    """True if the bytes start with the PNG signature (structure is not checked)."""
    return data[:8] == PNG_SIGNATURE


def iter_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, data_start, data_end) for each chunk up to IEND; structure checked, CRC not.

    CRCs are not verified: a bad CRC should not stop us reading text; our writes compute theirs.
    """
    if not is_png(data):
        raise NotPngError("not a PNG image (bad signature)")
    pos = len(PNG_SIGNATURE)
    first = True
    while True:
        if pos + 8 > len(data):
            raise NotPngError(f"truncated PNG: no chunk header at byte {pos} and no IEND seen")
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = data[pos + 4 : pos + 8]
        if length > _MAX_CHUNK_LENGTH or not ctype.isalpha():  # bytes.isalpha: ASCII letters
            raise NotPngError(f"garbled PNG: invalid chunk header at byte {pos}")
        if first and ctype != b"IHDR":
            raise NotPngError("garbled PNG: the first chunk is not IHDR")
        start = pos + 8
        end = start + length
        if end + 4 > len(data):
            raise NotPngError(f"truncated PNG: chunk {ctype.decode('ascii')} at byte {pos} is cut")
        yield ctype, start, end
        if ctype == b"IEND":
            return
        pos = end + 4
        first = False


def _inflate(payload: bytes) -> bytes | None:
    """zlib-decompress at most _MAX_TEXT_BYTES; None if the stream is broken or too large."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, _MAX_TEXT_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:
        return None
    return out


def _decode_text_chunk(ctype: bytes, body: bytes) -> tuple[str, str] | None:
    """(keyword, text) of one tEXt/zTXt/iTXt body; None if it is malformed."""
    keyword, sep, rest = body.partition(b"\0")
    if not sep or not keyword:
        return None
    key = keyword.decode("latin-1")
    if ctype == b"tEXt":
        return key, rest.decode("latin-1")
    if ctype == b"zTXt":
        if rest[:1] != b"\0":  # compression method 0 (zlib) is the only one defined
            return None
        inflated = _inflate(rest[1:])
        return None if inflated is None else (key, inflated.decode("latin-1"))
    # iTXt: flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        return None
    compressed, method = rest[0], rest[1]
    _language, sep1, rest = rest[2:].partition(b"\0")
    _translated, sep2, text = rest.partition(b"\0")
    if not (sep1 and sep2):
        return None
    if compressed:
        if method != 0:
            return None
        inflated = _inflate(text)
        if inflated is None:
            return None
        text = inflated
    return key, text.decode("utf-8", errors="replace")


def read_text_chunks(data: bytes) -> dict[str, str]:
    """All text chunks by keyword (a later duplicate wins, as in Pillow); malformed ones skipped."""
    texts: dict[str, str] = {}
    for ctype, start, end in iter_chunks(data):
        if ctype in _TEXT_TYPES:
            decoded = _decode_text_chunk(ctype, data[start:end])
            if decoded is not None:
                texts[decoded[0]] = decoded[1]
    return texts


def get_parameters(data: bytes) -> str | None:
    """The infotext stored in a PNG's `parameters` chunk, if any."""
    return read_text_chunks(data).get(_PARAMETERS)


def _chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(ctype))
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


class TextNotStorable(ValueError):
    """Text a PNG text chunk cannot hold: NUL separates the keyword and may not appear after."""


def _text_chunk(keyword: str, text: str) -> bytes:
    """tEXt when Latin-1 can hold the text (what the web UI writes), else uncompressed iTXt."""
    if "\0" in text:
        raise TextNotStorable("the text holds a NUL character, which PNG text chunks forbid")
    key = keyword.encode("latin-1")
    try:
        return _chunk(b"tEXt", key + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        # compression flag 0, method 0, empty language tag, empty translated keyword
        return _chunk(b"iTXt", key + b"\0\0\0\0\0" + text.encode("utf-8"))


def with_parameters(data: bytes, text: str, *, replace: bool = False) -> bytes:
    """Add a `parameters` chunk right after IHDR unless one exists (`replace`: in place of the
    ones that exist); every other byte is kept.

    TextNotStorable if `text` holds a NUL (a spec-conforming chunk cannot carry it).
    """
    chunks = list(iter_chunks(data))  # checks the whole structure first; chunks[0] is IHDR
    key = _PARAMETERS.encode("latin-1")
    found = [
        (start - 8, end + 4)  # the whole chunk: length and type before the body, CRC after
        for ctype, start, end in chunks
        if ctype in _TEXT_TYPES and data[start:end].partition(b"\0")[0] == key
    ]
    if found and not replace:
        return data
    new = _text_chunk(_PARAMETERS, text)
    for begin, end in reversed(found):  # all after IHDR: its end does not move
        data = data[:begin] + data[end:]
    insert_at = chunks[0][2] + 4  # after IHDR's CRC, so before any IDAT
    return data[:insert_at] + new + data[insert_at:]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from IHDR: the real size, larger than the request's after hires fix."""
    _ctype, start, end = next(iter_chunks(data))
    if end - start != 13:
        raise NotPngError("garbled PNG: IHDR is not 13 bytes long")
    width, height = struct.unpack_from(">II", data, start)
    return width, height


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG (IHDR) or JPEG (its frame header); None for other formats or a
    JPEG without a frame header. Reads headers only, without Pillow."""
    kind = sniff_image_format(data)
    if kind == "png":
        try:
            return png_size(data)
        except NotPngError:
            return None
    if kind != "jpeg":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        # SOF0-SOF15, except DHT (C4), JPG (C8) and DAC (CC): height, then width
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def sniff_image_format(data: bytes) -> str | None:
    """The image format from magic bytes; the server's `samples_format` decides, not the request."""
    if data[:8] == PNG_SIGNATURE:
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _decode_utf16(payload: bytes) -> str:
    """UTF-16 of unknown byte order: the web UI (piexif) writes big-endian, other tools may not."""
    if payload[:2] in (b"\xfe\xff", b"\xff\xfe"):
        order = ["utf-16-be"] if payload[:2] == b"\xfe\xff" else ["utf-16-le"]
        payload = payload[2:]
    else:
        # Mostly-ASCII text has its zero bytes first in each pair in big-endian, second in little.
        zeros_even = payload[0::2].count(0)
        zeros_odd = payload[1::2].count(0)
        order = ["utf-16-le", "utf-16-be"] if zeros_odd > zeros_even else ["utf-16-be", "utf-16-le"]
    payload = payload[: len(payload) - len(payload) % 2]
    for codec in order:
        try:
            return payload.decode(codec)
        except UnicodeDecodeError:
            continue
    return payload.decode(order[0], errors="replace")


def _decode_user_comment(raw: bytes | str) -> str:
    """EXIF UserComment: an 8-byte charset header, then the text in that charset."""
    if isinstance(raw, str):
        return raw.rstrip("\0")
    header, payload = raw[:8], raw[8:]
    if header == b"UNICODE\0":
        text = _decode_utf16(payload)
    elif header == b"JIS\0\0\0\0\0":
        text = payload.decode("shift_jis", errors="replace")
    elif header in (b"ASCII\0\0\0", b"\0" * 8):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = payload.decode("latin-1")
    else:
        text = raw.decode("utf-8", errors="replace")
    return text.rstrip("\0")


def _read_with_pillow(data: bytes, fmt: str) -> str | None:
    """JPEG/WebP: the EXIF UserComment; GIF: the comment. Pixels are never decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(BytesIO(data)) as image:
            if fmt == "gif":
                comment = image.info.get("comment")
                if isinstance(comment, bytes):
                    return comment.decode("utf-8", errors="replace")
                return comment if isinstance(comment, str) else None
            raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if isinstance(raw, bytes | str):
        return _decode_user_comment(raw)
    return None


def read_parameters_from_file(path: Path) -> str | None:
    """An image file's infotext (PNG chunk, JPEG/WebP EXIF UserComment, GIF comment), or None."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotPngError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parameters_from_bytes(data, str(path))


def parameters_from_bytes(data: bytes, name: str) -> str | None:
    """The infotext of an image file's bytes (`name` is for messages), or None."""
    fmt = sniff_image_format(data)
    if fmt is None:
        raise NotPngError(f"{name} is not a PNG, JPEG, WebP or GIF image")
    if fmt == "png":
        try:
            return get_parameters(data)
        except NotPngError as exc:
            raise NotPngError(f"{name}: {exc.message}") from exc
    try:
        return _read_with_pillow(data, fmt)
    except Exception as exc:  # Pillow signals corrupt files with many exception types
        raise NotPngError(f"{name}: unreadable {fmt.upper()} image ({exc})") from exc
