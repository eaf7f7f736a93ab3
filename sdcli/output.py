"""File names from templates, and writes that never clobber, never leave partial files.

Images come back after minutes of GPU time, so losing one to a name clash or a half-written file
is the worst outcome: every write goes to a temporary file first and is published under its final
name in one atomic step, and an existing name gets a "-1", "-2"… suffix unless overwriting is asked.

This module only uses os/pathlib (no tempfile, no rich): it is imported on every run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final

from sdcli.errors import OutputError, UsageError

DEFAULT_NAME_TEMPLATE: Final = "{date}-{time}-{index}-{seed}"
"""e.g. `20261125-174455-0001-1234567890.png`.

Plain `ls` order is generation order: date and time first (local, to the second), then the image's
number within the run, so a batch stays together and in order. The seed comes last because it is
what people copy to reproduce an image, and it keeps names distinct between runs in the same
second. Only digits and dashes: safe in every shell and file system. A clash still cannot
overwrite anything: `write_new_file` adds "-1".
"""

NAME_FIELDS: Final[dict[str, str]] = {
    "date": "local date, YYYYMMDD (or a strftime format: {date:%Y-%m-%d})",
    "time": "local time, HHMMSS (or a strftime format: {time:%H.%M})",
    "seed": "the image's actual seed",
    "index": "the image's number in this run, 4 digits",
    "batch": "the batch number in this run",
    "preset": "the preset name(s)",
    "prompt_slug": "the start of the prompt, made safe for a file name",
    "model": "the checkpoint's short name",
    "sampler": "the sampler name",
    "scheduler": "the schedule type",
    "steps": "sampling steps",
    "cfg_scale": "CFG scale",
    "width": "image width",
    "height": "image height",
    "init": "the init image's file name without extension (img2img)",
}
"""Fields a `--name` template may use, with a line of help for each."""

MAX_NAME_BYTES: Final = 200  # under the usual 255-byte limit, with room for a "-N" suffix
_MAX_SUFFIX: Final = 10_000
_DEFAULT_FORMATS: Final[dict[str, str]] = {"index": "04d", "date": "%Y%m%d", "time": "%H%M%S"}
# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
_UNSAFE_CHARS = r'[<>:"/\\|?*]'  # separators, plus what Windows refuses in names
_WINDOWS_RESERVED = r"(?i)(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?"
_SPEC_NUMBER = r"[0-9]+"  # width and precision in a format spec ("0>12", ".3f")
_STRFTIME_WIDTH = r"%[-_0^#]*([0-9]+)"  # glibc's strftime takes "%12Y" too
_EXTRA_NETWORK_TAG = r"<[^<>]*>"  # <lora:name:0.8> says nothing about the picture
# link() errors meaning "this file system cannot hard-link" (FAT, exFAT, some SMB/FUSE mounts).
_NO_LINK_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "EACCES", "EMLINK", "EXDEV", "ENOTSUP", "EOPNOTSUPP", "ENOSYS")
    if hasattr(errno, name)
)


def slugify(text: str, max_len: int = 48) -> str:
    """A prompt as a short file-name-safe slug: `"(masterpiece:1.2), 猫"` → `"masterpiece-1-2-猫"`.

    Unicode letters and digits are kept: ext4, APFS and NTFS all store Unicode names, and
    transliterating would reduce a Japanese or Cyrillic prompt to nothing. Everything else
    (punctuation, spaces, emoji, separators, control characters) becomes a single "-".
    """
    text = unicodedata.normalize("NFKC", re.sub(_EXTRA_NETWORK_TAG, " ", text)).lower()
    kept = "".join(ch if _is_word_char(ch) else "-" for ch in text)
    slug = re.sub(r"-{2,}", "-", kept).strip("-")
    return slug[: max(max_len, 0)].rstrip("-")


# Values of the types the real fields have, to try a template before anything is generated.
_SAMPLE_FIELDS: Final[dict[str, Any]] = {
    "seed": 1234567890,
    "index": 1,
    "batch": 1,
    "preset": "chibi",
    "prompt_slug": "a-cat",
    "model": "model",
    "sampler": "Euler a",
    "scheduler": "Karras",
    "steps": 20,
    "cfg_scale": 7.0,
    "width": 512,
    "height": 512,
    "init": "photo",
}


def check_name_template(template: str) -> None:
    """Reject a template with unknown fields or bad format specs before anything is generated.

    Rendering it once with sample values catches `{seed:q}` here, not after the server worked.
    """
    render_name(template, _SAMPLE_FIELDS)


def render_name(template: str, fields: Mapping[str, Any], *, ext: str = ".png") -> str:
    """A safe file name (not a path) from a `str.format`-style template and the image's fields.

    Fields missing from `fields` render empty, except `date`/`time`, which default to now;
    `prompt_slug` is derived from `fields["prompt"]` when only that is given. The result has no
    separators, "..", control characters or leading dots/dashes, fits in MAX_NAME_BYTES of UTF-8,
    and ends with `ext`.
    """
    ext = _check_ext(ext)
    now = datetime.now()
    parts: list[str] = []
    for literal, name, spec in _parse_template(template):
        parts.append(literal)
        if name is None:
            continue
        value = fields.get(name)
        if value is None and name in ("date", "time"):
            value = now
        if value is None and name == "prompt_slug" and fields.get("prompt") is not None:
            value = slugify(str(fields["prompt"]))
        parts.append(_format_field(name, value, spec))
    return _sanitise("".join(parts), ext)


def check_output_dir(directory: Path) -> None:
    """Fail before generating when images could not be saved in `directory` (OutputError).

    It probes with a real file (or directory, when it must still be created) rather than
    trusting permission bits: root, ACLs and read-only mounts all make those lie.
    """
    try:
        if directory.exists():
            if not directory.is_dir():
                raise OutputError(
                    f"cannot save images in {directory}: it is a file, not a directory",
                    hint="choose another output directory",
                )
            _probe(directory, make_dir=False)
            return
        if os.path.lexists(directory):
            raise OutputError(
                f"cannot save images in {directory}: it is a broken symbolic link",
                hint="fix the link or choose another output directory",
            )
        ancestor = directory
        while not ancestor.exists() and ancestor.parent != ancestor:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OutputError(
                f"cannot create {directory}: {ancestor} is a file, not a directory",
                hint="choose another output directory",
            )
        _probe(ancestor, make_dir=True)
    except OSError as exc:
        raise _output_error(exc, directory) from exc


def write_new_file(directory: Path, name: str, data: bytes, *, overwrite: bool = False) -> Path:
    """Save `data` as `directory/name` and return the path actually used.

    Without `overwrite`, an existing name is never replaced: the file is hard-linked into place
    (link() fails instead of clobbering, so concurrent processes cannot overwrite each other) and
    on a clash "name-1.png", "name-2.png"… are tried. Readers never see a partial file.
    """
    _check_file_name(name)
    stem, ext = _split_ext(name)
    candidates = (name if n == 0 else f"{stem}-{n}{ext}" for n in range(_MAX_SUFFIX))
    return _write(directory, candidates, data, overwrite=overwrite)


def write_atomic(path: Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Save `data` at exactly `path`, atomically: for files with a chosen name, such as presets.

    An existing file is an OutputError unless `overwrite`.
    """
    _check_file_name(path.name)
    return _write(path.parent, [path.name], data, overwrite=overwrite)


# --- names ---------------------------------------------------------------------------------


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch) in ("Mn", "Mc")  # keep accents, Indic vowels


def _parse_template(template: str) -> list[tuple[str, str | None, str]]:
    """(literal text, field name or None, format spec) triples; unknown fields → UsageError."""
    import string

    valid = ", ".join(NAME_FIELDS)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(
            f"bad file name template {template!r}: {exc}",
            hint="use {{ and }} for literal braces",
        ) from exc
    result: list[tuple[str, str | None, str]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (name not in NAME_FIELDS or conversion or "{" in (spec or "")):
            shown = "{" + name + (f"!{conversion}" if conversion else "") + "}"
            raise UsageError(
                f"unknown field {shown} in file name template {template!r}",
                hint=f"valid fields: {valid}",
            )
        if name is not None and spec:
            _check_spec_width(name, spec)
        result.append((literal, name, spec or ""))
    return result


def _check_spec_width(name: str, spec: str) -> None:
    """Refuse a width or precision longer than any file name (`{seed:>999999999}` would
    allocate gigabytes before the name is cut to MAX_NAME_BYTES)."""
    numbers = re.findall(_STRFTIME_WIDTH if name in ("date", "time") else _SPEC_NUMBER, spec)
    for number in numbers:
        digits = number.lstrip("0")
        if len(digits) > 4 or int(digits or "0") > MAX_NAME_BYTES:
            raise UsageError(
                f"{{{name}:{spec}}} in the file name template asks for a width or precision "
                f"above {MAX_NAME_BYTES}, more than a file name can hold",
            )


def _format_field(name: str, value: Any, spec: str) -> str:
    if value is None:
        return ""
    if not spec and isinstance(value, date | time) and name in ("date", "time"):
        spec = _DEFAULT_FORMATS[name]
    if not spec and name == "index" and isinstance(value, int):
        spec = _DEFAULT_FORMATS[name]
    try:
        return format(value, spec)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot format {{{name}:{spec}}} with {value!r}: {exc}") from exc


def _sanitise(name: str, ext: str) -> str:
    """Make a rendered template a single portable file name (see `render_name`)."""
    chars: list[str] = []
    for ch in unicodedata.normalize("NFC", name.strip()):
        if ch.isspace():
            chars.append("_")
        elif unicodedata.category(ch)[0] == "C":  # control, format (bidi overrides), surrogates
            continue
        else:
            chars.append(ch)
    stem = re.sub(_UNSAFE_CHARS, "_", "".join(chars))
    stem = re.sub(r"\.{2,}", ".", stem)
    if stem.lower().endswith(ext.lower()):
        stem = stem[: -len(ext)]
    # No hidden files or option-like names; no trailing dot (Windows drops it) or dangling
    # separator left by an empty field ("{seed}-{preset}" → "42").
    stem = stem.strip("._-")
    budget = MAX_NAME_BYTES - len(ext.encode())
    stem = stem.encode()[:budget].decode(errors="ignore").rstrip("._-")
    if not stem:
        stem = "image"
    if re.fullmatch(_WINDOWS_RESERVED, stem):
        stem = "_" + stem
    return stem + ext


def _check_ext(ext: str) -> str:
    ext = ext if ext.startswith(".") else f".{ext}"
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,10}", ext):
        raise UsageError(f"bad file extension {ext!r}")
    return ext


def _check_file_name(name: str) -> None:
    bad = not name or name in (".", "..") or "\0" in name
    if bad or any(sep in name for sep in ("/", "\\", os.sep)):
        raise OutputError(f"invalid file name {name!r}: it must be a single name, not a path")


def _split_ext(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if stem else (name, "")


# --- writing -------------------------------------------------------------------------------


def _write(directory: Path, names: Iterable[str], data: bytes, *, overwrite: bool) -> Path:
    """Write a temp file in `directory`, then publish it under the first free name of `names`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # FileExistsError here: a file sits where the directory should be
        raise _output_error(exc, directory) from exc
    tmp = _write_temp(directory, data)
    try:
        return _publish(tmp, directory, iter(names), overwrite=overwrite)
    finally:
        _remove(tmp)


def _write_temp(directory: Path, data: bytes) -> Path:
    """A fully written, fsynced temp file in `directory` (same file system, so linking works)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for tmp in _temp_names(directory, ".tmp"):
        try:
            fd = os.open(tmp, flags, 0o666)  # 0o666 & umask, like any new file (mkstemp: 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _output_error(exc, directory) from exc
        break
    else:  # pragma: no cover - 100 random 48-bit names all taken
        raise OutputError(f"cannot create a temporary file in {directory}")
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # on NFS a full disk may only be reported here
    except OSError as exc:
        _remove(tmp)
        raise _output_error(exc, directory) from exc
    except BaseException:  # Ctrl-C in the middle of a write: leave no temp file behind
        _remove(tmp)
        raise
    return tmp


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _publish(tmp: Path, directory: Path, names: Iterator[str], *, overwrite: bool) -> Path:
    use_link = hasattr(os, "link")
    name = next(names)
    while True:
        final = directory / name
        try:
            if overwrite:
                os.replace(tmp, final)
            elif use_link:
                os.link(tmp, final)
            else:
                _reserve_then_replace(tmp, final)
            return final
        except FileExistsError as exc:
            if overwrite:
                raise _output_error(exc, final) from exc
            next_name = next(names, None)
            if next_name is None:
                raise OutputError(
                    f"{final} already exists",
                    hint="choose another name, or allow overwriting (--force / --overwrite)",
                ) from exc
            name = next_name
        except OSError as exc:
            if use_link and not overwrite and exc.errno in _NO_LINK_ERRNOS:
                use_link = False  # retry the same name without hard links
                continue
            raise _output_error(exc, final) from exc


def _reserve_then_replace(tmp: Path, final: Path) -> None:
    """No-clobber without link(): claim the name with O_EXCL, then move the data over it.

    The claimed file is empty for a moment, never partial; FileExistsError means "try another".
    """
    fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    try:
        os.replace(tmp, final)
    except OSError:
        _remove(final)
        raise


def _probe(directory: Path, *, make_dir: bool) -> None:
    probe = next(_temp_names(directory, ".probe"))
    if make_dir:
        os.mkdir(probe)
        os.rmdir(probe)
    else:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)


def _temp_names(directory: Path, suffix: str) -> Iterator[Path]:
    """Hidden, short, unguessable names, so a long final name never makes the temp name too long."""
    for _ in range(100):
        yield directory / f".sdcli-{os.getpid()}-{os.urandom(6).hex()}{suffix}"


def _remove(path: Path) -> None:
    # Already gone, or cleanup failing: either way it must not hide the error that got us here.
    with contextlib.suppress(OSError):
        os.unlink(path)


def _output_error(exc: OSError, path: Path) -> OutputError:
    """One line a user can act on, for each way a write can fail."""
    where = path  # not exc.filename: that may be our temp file, which means nothing to a user
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return OutputError(
            f"no space left to write {where}", hint="free some disk space or use another directory"
        )
    if code == errno.EFBIG:
        return OutputError(
            f"file too large to write {where} (file size limit reached)",
            hint="raise the limit (ulimit -f) or use another directory",
        )
    if code == errno.EROFS:
        return OutputError(
            f"cannot write {where}: read-only file system", hint="choose another output directory"
        )
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(
            f"permission denied writing {where}", hint="choose a directory you can write to"
        )
    if code in (errno.ENOTDIR, errno.EEXIST):
        return OutputError(
            f"cannot write {where}: a file is in the way where a directory should be",
            hint="choose another output directory",
        )
    if code == errno.EISDIR:
        return OutputError(f"cannot write {where}: it is a directory", hint="choose another name")
    if code == errno.ENAMETOOLONG:
        return OutputError(f"file name too long: {where}", hint="use a shorter name template")
    return OutputError(f"cannot write {where}: {exc.strerror or exc}")
