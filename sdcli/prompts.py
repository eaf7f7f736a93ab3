"""Prompts from the command line, stdin or a file: one per line, UTF-8, each line bounded.

Lines are read as bytes and decoded here, so a stray Latin-1 byte is a clear usage error (not
a crash deep in the JSON encoder), `- < /dev/zero` cannot fill the memory, and a UTF-8 byte
order mark from a Windows editor does not end up in the first prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from sdcli.errors import UsageError

MAX_PROMPT_BYTES: Final = 1024 * 1024  # one line; the longest prompt sdcli sends (1 MiB)
_BOM: Final = b"\xef\xbb\xbf"


def read_prompts(words: list[str], prompts_file: Path | None, stdin: BinaryIO) -> Iterator[str]:
    """Prompts in order: from the words, or one per line from stdin/a file (read lazily)."""
    if prompts_file is not None:
        try:
            handle = prompts_file.open("rb")
        except OSError as exc:
            raise UsageError(f"cannot read --prompts-file {prompts_file}: {exc.strerror}") from exc
        with handle:
            yield from prompt_lines(handle, str(prompts_file))
        return
    if words == ["-"]:
        yield from prompt_lines(stdin, "stdin")
        return
    text = " ".join(words)
    check_prompt(text, "the prompt")
    yield text


def prompt_lines(stream: BinaryIO, where: str) -> Iterator[str]:
    """Non-blank lines that are not `#` comments, stripped; bad bytes name the line."""
    number = 0
    while True:
        try:
            line = stream.readline(MAX_PROMPT_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {where}: {exc.strerror or exc}") from exc
        if not line:
            return
        number += 1
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if len(line) > MAX_PROMPT_BYTES and not line.endswith(b"\n"):
            raise UsageError(
                f"line {number} of {where} is longer than 1 MiB, the most sdcli takes for one "
                "prompt",
                hint="one prompt per line; is this a text file?",
            )
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"line {number} of {where} is not valid UTF-8 "
                f"(byte 0x{line[exc.start]:02x} at column {exc.start + 1})",
                hint="save it as UTF-8, e.g. iconv -f latin1 -t utf-8",
            ) from exc
        if text.strip() and not text.lstrip().startswith("#"):
            check_prompt(text, f"line {number} of {where}")
            yield text.strip()


def check_prompt(text: str, what: str) -> None:
    """Refuse text the request (UTF-8 JSON) or the image's PNG text chunk cannot carry."""
    problem = text_problem(text)
    if problem is not None:
        raise UsageError(f"{what} {problem}")


def text_problem(text: str) -> str | None:
    """Why `text` cannot be sent, or None.

    Python hands undecodable bytes from argv (and a C-locale stdin) over as lone surrogates,
    which UTF-8 cannot encode; a NUL is the keyword separator of PNG text chunks, so the
    `parameters` chunk could not hold it (the PNG spec forbids it in the text).
    """
    if "\0" in text:
        return "holds a NUL character, which the image's PNG text chunk cannot carry"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        if 0xDC80 <= code <= 0xDCFF:
            return f"is not valid UTF-8 (byte 0x{code - 0xDC00:02x}; is the locale UTF-8?)"
        return f"holds a lone surrogate (U+{code:04X}), which UTF-8 cannot encode"
    return None
