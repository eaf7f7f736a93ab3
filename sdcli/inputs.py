"""Images given on the command line (files or directories), checked before anything is sent.

A file that is not an image, or a directory without one, is bad local input (exit 2): the web
UI would answer 500 "Invalid encoded image" only after the upload, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sdcli.datatypes import frozen
from sdcli.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
"""What a directory is searched for (the formats the web UI decodes and sdcli saves)."""


@frozen
class InputImage:
    """A local image file as read: its bytes are sent unchanged (never re-encoded)."""

    path: Path
    data: bytes
    format: str  # "png", "jpeg", "webp", "gif"
    width: int
    height: int

    @property
    def stem(self) -> str:
        return self.path.stem


def expand_paths(paths: Iterable[Path], *, what: str = "image") -> list[Path]:
    """Files as given, directories as their images sorted by name (not recursive)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not inside:
                raise UsageError(
                    f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                    hint=f"give the {what} files themselves, or a directory of them",
                )
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"no such file: {path}")
    return found


def read_image(path: Path) -> InputImage:
    """The file's bytes and size; UsageError when it cannot be read or is no image."""
    from sdcli.pngmeta import image_size, sniff_image_format

    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not an image") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    kind = sniff_image_format(data)
    if kind is None:
        raise UsageError(f"{path} is not an image (PNG, JPEG, WebP or GIF)")
    size = image_size(data)
    if size is None:  # WebP, GIF, or a header the quick reader does not know
        size = _size_with_pillow(path, data, kind)
    return InputImage(path=path, data=data, format=kind, width=size[0], height=size[1])


def _size_with_pillow(path: Path, data: bytes, kind: str) -> tuple[int, int]:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return int(width), int(height)
    except Exception as exc:  # Pillow signals corrupt files with many exception types
        raise UsageError(f"{path} is not a readable {kind.upper()} image ({exc})") from exc


def read_images(paths: Iterable[Path], *, what: str = "image") -> list[InputImage]:
    """Every image of `paths` (directories expanded), all checked before any is sent."""
    return [read_image(p) for p in expand_paths(paths, what=what)]
