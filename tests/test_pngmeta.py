"""PNG text chunks on bytes (against the server's own sample.png) and metadata from image files."""

from __future__ import annotations

import ast
import re
import struct
import subprocess
import sys
import zlib
from io import BytesIO
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from sdcli.errors import ExitCode, UsageError
from sdcli.pngmeta import (
    PNG_SIGNATURE,
    NotPngError,
    TextNotStorable,
    get_parameters,
    is_png,
    iter_chunks,
    png_size,
    read_parameters_from_file,
    read_text_chunks,
    sniff_image_format,
    with_parameters,
)

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = (FIXTURES / "sample.png").read_bytes()
SAMPLE_TEXTS: dict[str, str] = ast.literal_eval(
    (FIXTURES / "infotext" / "sample-png-info.txt").read_text("utf-8")
)
INFOTEXT = SAMPLE_TEXTS["parameters"]


def chunk(ctype: bytes, body: bytes) -> bytes:
    """A chunk built independently of the code under test."""
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def chunk_list(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk, asserting every CRC is right."""
    chunks = []
    for ctype, start, end in iter_chunks(data):
        (crc,) = struct.unpack_from(">I", data, end)
        assert crc == zlib.crc32(data[start - 4 : end]), f"bad CRC in {ctype!r}"
        chunks.append((ctype, data[start:end]))
    return chunks


def without_text_chunks(data: bytes) -> bytes:
    """The PNG with its text chunks cut out: what a server with enable_pnginfo off would send."""
    kept = [
        data[start - 8 : end + 4]
        for ctype, start, end in iter_chunks(data)
        if ctype not in (b"tEXt", b"zTXt", b"iTXt")
    ]
    return PNG_SIGNATURE + b"".join(kept)


BARE = without_text_chunks(SAMPLE)


def pixels(data: bytes) -> bytes:
    with Image.open(BytesIO(data)) as image:
        decoded: bytes = image.tobytes()
    return decoded


def pillow_text(data: bytes) -> dict[str, str]:
    with Image.open(BytesIO(data)) as image:
        image.load()
        return {key: str(value) for key, value in image.info.items() if isinstance(value, str)}


# --- reading --------------------------------------------------------------------------------------


def test_sample_png_chunks_are_the_servers() -> None:
    assert [ctype for ctype, _ in chunk_list(SAMPLE)] == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert read_text_chunks(SAMPLE) == SAMPLE_TEXTS
    assert get_parameters(SAMPLE) == INFOTEXT
    assert png_size(SAMPLE) == (64, 64)


def test_iter_chunks_spans_the_whole_file() -> None:
    spans = list(iter_chunks(SAMPLE))
    assert spans[0] == (b"IHDR", 16, 29)
    assert spans[-1][0] == b"IEND" and spans[-1][2] + 4 == len(SAMPLE)


def test_sniff_image_format_from_magic_bytes() -> None:
    assert is_png(SAMPLE) and not is_png(b"GIF89a")
    assert sniff_image_format(SAMPLE) == "png"
    assert sniff_image_format(b"\xff\xd8\xff\xe0" + b"\0" * 8) == "jpeg"
    assert sniff_image_format(b"RIFF\x10\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image_format(b"GIF87a...") == "gif"
    assert sniff_image_format(b"RIFF\x10\0\0\0WAVEfmt ") is None
    assert sniff_image_format(b"") is None


def test_reads_ztxt_and_compressed_itxt_as_pillow_writes_them() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat, zipped " * 20, zip=True)  # zTXt
    info.add_itxt("comment", "猫 🐱 " * 20, zip=True)
    info.add_itxt("plain", "ñ", lang="es", tkey="llano")
    buf = BytesIO()
    Image.new("RGB", (2, 2)).save(buf, "PNG", pnginfo=info)
    data = buf.getvalue()
    assert {ctype for ctype, _ in chunk_list(data)} >= {b"zTXt", b"iTXt"}
    assert read_text_chunks(data) == {
        "parameters": "a cat, zipped " * 20,
        "comment": "猫 🐱 " * 20,
        "plain": "ñ",
    }


def test_malformed_text_chunks_are_skipped_and_bad_crc_tolerated() -> None:
    ihdr_end = 8 + 25
    broken = [
        chunk(b"tEXt", b"no separator"),
        chunk(b"zTXt", b"key\0\0not zlib"),
        chunk(b"iTXt", b"key\0\0"),
    ]
    data = SAMPLE[:ihdr_end] + b"".join(broken) + SAMPLE[ihdr_end:]
    assert read_text_chunks(data) == SAMPLE_TEXTS
    text_start = next(start for ctype, start, _ in iter_chunks(SAMPLE) if ctype == b"tEXt")
    crc_at = text_start + len(INFOTEXT) + len(b"parameters\0")
    bad_crc = SAMPLE[:crc_at] + bytes(4) + SAMPLE[crc_at + 4 :]
    assert bad_crc != SAMPLE
    assert get_parameters(bad_crc) == INFOTEXT


# --- splicing -------------------------------------------------------------------------------------


def test_splice_into_png_without_chunk_restores_the_servers_bytes() -> None:
    assert get_parameters(BARE) is None
    result = with_parameters(BARE, INFOTEXT)
    assert result == SAMPLE  # the server writes the same single tEXt chunk right after IHDR
    assert len(result) == len(BARE) + 12 + len(b"parameters\0") + len(INFOTEXT)
    assert [c for c in chunk_list(result) if c[0] != b"tEXt"] == chunk_list(BARE)
    assert pillow_text(result) == {"parameters": INFOTEXT}
    assert pixels(result) == pixels(BARE) == pixels(SAMPLE)


@pytest.mark.parametrize(
    ("text", "ctype"),
    [
        ("café crème, ß, ±½ 1.0×\nSteps: 2, Sampler: Euler", b"tEXt"),
        ("猫耳の少女, 🐱✨\nNegative prompt: 低品質\nSteps: 2, Sampler: Euler", b"iTXt"),
        ("", b"tEXt"),
    ],
    ids=["latin-1", "japanese-emoji", "empty"],
)
def test_splice_picks_text_or_itxt_and_round_trips(text: str, ctype: bytes) -> None:
    result = with_parameters(BARE, text)
    chunks = chunk_list(result)
    assert [c[0] for c in chunks] == [b"IHDR", ctype, b"IDAT", b"IEND"]
    assert result[:33] == BARE[:33] and result.endswith(BARE[33:])
    if ctype == b"iTXt":
        assert chunks[1][1] == b"parameters\0\0\0\0\0" + text.encode("utf-8")
    assert get_parameters(result) == text
    assert pillow_text(result) == {"parameters": text}
    assert pixels(result) == pixels(BARE)


@pytest.mark.parametrize("existing", ["tEXt", "zTXt", "iTXt"])
def test_existing_parameters_chunk_leaves_bytes_unchanged(existing: str) -> None:
    info = PngImagePlugin.PngInfo()
    if existing == "iTXt":
        info.add_itxt("parameters", "old 猫")
    else:
        info.add_text("parameters", "old", zip=existing == "zTXt")
    buf = BytesIO()
    Image.new("RGB", (2, 2)).save(buf, "PNG", pnginfo=info)
    data = buf.getvalue()
    assert existing.encode() in {ctype for ctype, _ in chunk_list(data)}
    assert with_parameters(data, "new") == data
    assert with_parameters(SAMPLE, "new") == SAMPLE
    replaced = with_parameters(data, "new 猫", replace=True)
    assert read_text_chunks(replaced) == {"parameters": "new 猫"}
    assert [c for c, _ in chunk_list(replaced)].count(existing.encode()) <= 1
    with Image.open(BytesIO(replaced)) as image:  # a valid PNG: every CRC and length right
        image.load()
        assert image.size == (2, 2)


def test_parameters_chunk_after_idat_also_counts() -> None:
    iend = len(SAMPLE) - 12
    data = BARE[: len(BARE) - 12] + chunk(b"tEXt", b"parameters\0late") + SAMPLE[iend:]
    assert get_parameters(data) == "late"
    assert with_parameters(data, "new") == data


@given(st.text().filter(lambda text: "\0" not in text))
def test_any_text_survives_the_splice(text: str) -> None:
    assert get_parameters(with_parameters(BARE, text)) == text


@pytest.mark.parametrize("text", ["a\0b", "猫\0"])  # tEXt and iTXt alike
def test_a_nul_is_never_spliced_into_a_text_chunk(text: str) -> None:
    # NUL ends the keyword; the PNG spec allows none in the text, so no chunk is written.
    with pytest.raises(TextNotStorable):
        with_parameters(BARE, text)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        SAMPLE[:5],  # inside the signature
        SAMPLE[:20],  # inside IHDR's header
        SAMPLE[:400],  # inside IDAT
        SAMPLE[:-12],  # IEND missing
        SAMPLE[:-2],  # IEND's CRC cut
        b"\x89PNG\r\n\x1a\x0a" + b"\0\0\0\x0d" + b"IH\0R" + SAMPLE[16:],  # garbled type
        b"\x89PNG\r\n\x1a\x0a" + b"\xff\xff\xff\xff" + SAMPLE[12:],  # absurd length
        PNG_SIGNATURE + SAMPLE[8 + 25 :],  # first chunk is not IHDR
        b"GIF89a" + SAMPLE[6:],
        b"",
    ],
    ids=["sig", "ihdr", "idat", "no-iend", "iend-crc", "type", "length", "order", "magic", "empty"],
)
def test_truncated_or_garbled_png_raises_not_png(data: bytes) -> None:
    with pytest.raises(NotPngError):
        list(iter_chunks(data))
    with pytest.raises(NotPngError):
        read_text_chunks(data)
    with pytest.raises(NotPngError):
        get_parameters(data)
    with pytest.raises(NotPngError):
        with_parameters(data, "x")


@pytest.mark.parametrize("data", [b"", SAMPLE[:20], PNG_SIGNATURE + SAMPLE[8 + 25 :]])
def test_png_size_needs_a_whole_ihdr(data: bytes) -> None:
    with pytest.raises(NotPngError):
        png_size(data)


def test_not_png_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        get_parameters(b"not a png")
    assert caught.value.exit_code == ExitCode.USAGE
    assert "PNG" in caught.value.message


def test_pillow_is_imported_lazily() -> None:
    code = "import sys, sdcli.pngmeta; print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- files --------------------------------------------------------------------------------------


def save(image: Image.Image, path: Path, fmt: str, **kwargs: object) -> Path:
    image.save(path, fmt, **kwargs)
    return path


def user_comment_exif(raw: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = raw
    return exif


def test_png_file(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(SAMPLE)
    assert read_parameters_from_file(path) == INFOTEXT
    path.write_bytes(BARE)
    assert read_parameters_from_file(path) is None


JAPANESE = "猫耳, 🐱\nNegative prompt: 低品質\nSteps: 20, Sampler: Euler a, Seed: 7"


@pytest.mark.parametrize(
    "raw",
    [
        b"UNICODE\0" + JAPANESE.encode("utf-16-be"),  # what the web UI (piexif) writes
        b"UNICODE\0" + JAPANESE.encode("utf-16-le"),
        b"UNICODE\0" + JAPANESE.encode("utf-16"),  # with a byte-order mark
    ],
    ids=["utf16-be", "utf16-le", "utf16-bom"],
)
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_exif_user_comment_in_jpeg_and_webp(tmp_path: Path, fmt: str, raw: bytes) -> None:
    image = Image.new("RGB", (16, 16), (200, 100, 50))
    path = save(image, tmp_path / f"a.{fmt.lower()}", fmt, exif=user_comment_exif(raw))
    assert read_parameters_from_file(path) == JAPANESE


def test_ascii_user_comment_and_jpeg_without_exif(tmp_path: Path) -> None:
    image = Image.new("RGB", (16, 16))
    ascii_raw = b"ASCII\0\0\0a cat\nSteps: 2, Sampler: Euler, Seed: 1"
    path = save(image, tmp_path / "a.jpg", "JPEG", exif=user_comment_exif(ascii_raw))
    assert read_parameters_from_file(path) == "a cat\nSteps: 2, Sampler: Euler, Seed: 1"
    assert read_parameters_from_file(save(image, tmp_path / "b.jpg", "JPEG")) is None


def test_gif_comment(tmp_path: Path) -> None:
    path = save(Image.new("P", (4, 4)), tmp_path / "a.gif", "GIF", comment="猫\nSteps: 2".encode())
    assert read_parameters_from_file(path) == "猫\nSteps: 2"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"a cat\nSteps: 2, Sampler: Euler, Seed: 1"),
        ("cut.png", SAMPLE[:500]),
        ("broken.jpg", b"\xff\xd8\xff\xe0 this is no jpeg"),
    ],
)
def test_unreadable_files_raise_not_png_naming_the_file(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NotPngError, match=re.escape(name)):
        read_parameters_from_file(path)


def test_missing_file_raises_not_png_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(NotPngError, match=re.escape("nowhere.png")):
        read_parameters_from_file(tmp_path / "nowhere.png")
