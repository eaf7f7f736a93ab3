"""TOML presets: find them on the search path, load them, resolve `extends`, merge, list, save.

A preset holds the settings a user thinks in (`sampler`, `steps`, `clip_skip`…), not the web UI's
wire format; `sdcli/payload.py` translates. Everything here raises `PresetError` (or `OutputError`
when saving) with the file and the key, so the CLI can print one useful line. Which keys exist
and what each accepts lives in `sdcli/preset_schema.py`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from typing import Any, Final, Literal

from sdcli.config import builtin_presets_dir, preset_path_dirs, user_presets_dir
from sdcli.datatypes import frozen
from sdcli.errors import OutputError, PresetError, UnknownPresetError
from sdcli.preset_schema import PRESET_KEYS as PRESET_KEYS  # re-exported: the CLI and tests use it
from sdcli.preset_schema import (
    check_values,
    copy_toml,
    did_you_mean_suffix,
    named_problem,
    problems_message,
)
from sdcli.preset_schema import validate_values as validate_values  # re-exported, as above

PresetSource = Literal["built-in", "user", "path", "file"]


# Keys that describe a preset file rather than the request; they are not inherited or merged.
_META_KEYS: Final = ("description", "extends")
# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
_SAFE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_WINDOWS_RESERVED = r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?"
_LIST_HINT = "run `sdcli presets list` to see them"


@frozen
class Preset:
    """A loaded preset: `values` are validated, with `extends` resolved (parent first, child wins).

    `values` hold only request settings: `description` is an attribute and `extends` is resolved
    into `parents` (nearest first), so merging presets never mixes up whose description is whose.
    """

    name: str
    source: PresetSource
    path: Path | None
    values: dict[str, Any] = field(hash=False)
    description: str = ""
    parents: tuple[str, ...] = ()


@frozen
class PresetInfo:
    """One row of `sdcli presets list`: never raises, a broken file carries `error` instead."""

    name: str
    source: PresetSource
    path: Path
    description: str = ""
    shadows: tuple[PresetSource, ...] = ()  # sources further down the search path it hides
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {
            "name": self.name,
            "source": self.source,
            "path": str(self.path),
            "description": self.description,
            "shadows": list(self.shadows),
            "error": self.error,
        }


def search_path() -> list[tuple[PresetSource, Path]]:
    """Directories searched for NAME.toml, first hit wins (DESIGN.md "Presets")."""
    dirs: list[tuple[PresetSource, Path]] = [("path", d) for d in preset_path_dirs()]
    dirs.append(("user", user_presets_dir()))
    dirs.append(("built-in", builtin_presets_dir()))
    return dirs


def find_preset(name: str) -> tuple[PresetSource, Path]:
    """Where preset `name` lives: a path to a .toml file as is, else the first search-path hit."""
    return _find(name)


def load_preset(name: str) -> Preset:
    """Load, validate and resolve preset `name` (or a path to a .toml file)."""
    source, path = find_preset(name)
    display = path.stem if source == "file" else name
    return _load(display, source, path)


def merge_presets(presets: Sequence[Preset]) -> dict[str, Any]:
    """Combine several presets' values: later presets win; `params` are merged key by key."""
    merged: dict[str, Any] = {}
    for preset in presets:
        merged = _merge(merged, preset.values)
    return merged


def list_presets() -> list[PresetInfo]:
    """Every preset name once, as the search path resolves it; broken files get `error`."""
    winners: dict[str, PresetInfo] = {}
    for source, directory in search_path():
        for path in _toml_files(directory):
            name = path.stem
            if name in winners:
                first = winners[name]
                winners[name] = replace(first, shadows=(*first.shadows, source))
                continue
            description, error = "", None
            try:
                preset = _load(name, source, path)
                description = preset.description
            except PresetError as exc:
                error = str(exc)
                description = _raw_description(path)
            winners[name] = PresetInfo(name, source, path, description, error=error)
    return [winners[name] for name in sorted(winners)]


def save_preset(name: str, values: Mapping[str, Any], *, force: bool = False) -> Path:
    """Write user preset NAME.toml atomically; an existing file is kept unless `force`."""
    from sdcli.output import write_atomic

    _check_name(name)
    path = user_presets_dir() / f"{name}.toml"
    clean = validate_values(values, where=str(path))
    parent = clean.get("extends")
    if parent is not None:
        _check_parent(name, parent, path)
    if path.exists() and not force:
        raise OutputError(
            f"preset '{name}' already exists at {path}", hint="use --force to replace it"
        )
    if not force:
        _check_shadowing(name, path, extends=parent)
    return write_atomic(path, dumps_preset(clean).encode("utf-8"), overwrite=force)


def dumps_preset(values: Mapping[str, Any]) -> str:
    """TOML text with a stable key order: description first, known keys in order, params last."""
    import tomli_w

    present = {key: value for key, value in values.items() if value is not None}
    ordered = {key: present[key] for key in PRESET_KEYS if key in present}
    ordered.update({key: value for key, value in present.items() if key not in PRESET_KEYS})
    if "params" in ordered:
        ordered["params"] = ordered.pop("params")  # a TOML table must come after plain keys
    return tomli_w.dumps(ordered)


# --- finding -------------------------------------------------------------------------------


def _find(
    name: str, *, after: Path | None = None, pending: Path | None = None
) -> tuple[PresetSource, Path]:
    """Search for NAME.toml; with `after`, only in directories that come after that one.

    `pending` is a file about to be saved: it counts as present, so a save can detect cycles.
    """
    if not name:
        raise PresetError("a preset name cannot be empty", hint=_LIST_HINT)
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if _is_file(path):
            return "file", path
        stem = name.removesuffix(".toml")
        hint = None
        if not _looks_like_path(stem) and stem in _known_names():
            hint = f"to use the preset named '{stem}', leave out .toml"
        raise PresetError(f"preset file not found: {path}", hint=hint)
    dirs = search_path()
    if after is not None:
        later = [i for i, (_, d) in enumerate(dirs) if _same_dir(d, after)]
        dirs = dirs[later[0] + 1 :] if later else dirs
    for source, directory in dirs:
        path = directory / f"{name}.toml"
        if _is_file(path) or path == pending:
            return source, path
    raise UnknownPresetError(
        f"unknown preset '{name}'{did_you_mean_suffix(name, _known_names())}", hint=_LIST_HINT
    )


def _looks_like_path(name: str) -> bool:
    separators = {"/", os.sep, os.altsep or "/"}
    return name.endswith(".toml") or any(sep in name for sep in separators)


def _is_file(path: Path) -> bool:
    """Like Path.is_file, but a directory we may not enter holds no presets instead of raising."""
    try:
        return path.is_file()
    except OSError:
        return False


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def _toml_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.glob("*.toml") if _is_file(p))
    except OSError:  # a missing or unreadable search directory simply holds no presets
        return []


def _known_names() -> list[str]:
    return sorted({p.stem for _, d in search_path() for p in _toml_files(d)})


# --- loading -------------------------------------------------------------------------------


def _load(name: str, source: PresetSource, path: Path) -> Preset:
    """Load one file; its own problems and those of its `extends` chain are reported together."""
    raw = _read_toml(path)
    values, problems = check_values(raw)
    try:
        resolved, parents = _resolve(name, path, values, chain=[(name, path)])
    except PresetError as exc:
        if not problems:
            raise
        own = exc.message.removeprefix(f"{path}: ")
        problems.append(own if own != exc.message else named_problem(own))
    if problems:
        raise PresetError(problems_message(str(path), problems))
    return Preset(name, source, path, resolved, values.get("description", ""), parents)


def _resolve(
    name: str,
    path: Path,
    values: dict[str, Any],
    *,
    chain: list[tuple[str, Path]],
    pending: Path | None = None,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Values with the `extends` chain applied; `chain` holds the files already on the way."""
    own = {k: v for k, v in values.items() if k not in _META_KEYS}
    parent = values.get("extends")
    if parent is None:
        return own, ()
    parent_path = _find_parent(name, parent, path, pending=pending)
    seen = [p.resolve() for _, p in chain]
    if parent_path.resolve() in seen:
        names = " -> ".join([n for n, _ in chain] + [parent])
        raise PresetError(f"{path}: 'extends' makes a cycle: {names}")
    parent_values = validate_values(_read_toml(parent_path), where=str(parent_path))
    inherited, grandparents = _resolve(
        parent, parent_path, parent_values, chain=[*chain, (parent, parent_path)], pending=pending
    )
    return _merge(inherited, own), (parent, *grandparents)


def _find_parent(name: str, parent: str, path: Path, *, pending: Path | None = None) -> Path:
    """The file `extends = parent` in `path` means; errors name `path`, the file to fix."""
    if _looks_like_path(parent):
        parent = str(path.parent / Path(parent).expanduser())  # relative to the preset file
    if parent == name:
        # `extends = "chibi"` inside a chibi.toml means the chibi it shadows, further down the path.
        try:
            return _find(parent, after=path.parent, pending=pending)[1]
        except PresetError as exc:
            raise PresetError(
                f"{path}: extends itself ('{name}'), and no preset named '{name}' comes after it "
                "on the search path"
            ) from exc
    try:
        return _find(parent, pending=pending)[1]
    except PresetError as exc:
        raise PresetError(f"{path}: extends {exc.message}", hint=exc.hint) from exc


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PresetError(f"cannot read preset {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PresetError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = _show_position(text, str(exc))
        raise PresetError(f"{path}: invalid TOML: {exc}", context=where) from exc
    return data


_POSITION = r"\(at line (\d+), column (\d+)\)$"
_SHOWN_WIDTH: Final = 100


def _show_position(text: str, message: str) -> tuple[str, str] | tuple[()]:
    """The offending line and a caret under the column the TOML parser names, if it names one.

    Tabs are shown as four spaces and anything unprintable as "?", so the caret lines up.
    """
    import unicodedata

    found = re.search(_POSITION, message)
    lines = text.split("\n")
    if found is not None and 1 <= int(found.group(1)) <= len(lines):
        number, column = int(found.group(1)), int(found.group(2))
        line = lines[number - 1].rstrip("\r")
    elif message.endswith("(at end of document)") and text.strip():
        number = len(text.rstrip().split("\n"))  # the last line that holds anything
        line = lines[number - 1].rstrip("\r")
        column = len(line) + 1
    else:
        return ()
    start = max(0, column - 1 - _SHOWN_WIDTH + 20)  # a long line: keep the column in sight

    def cell(ch: str) -> str:
        return "    " if ch == "\t" else ch if ch.isprintable() else "?"

    def width(ch: str) -> str:
        wide = unicodedata.east_asian_width(ch) in "WF" and ch.isprintable()
        return "    " if ch == "\t" else "  " if wide else " "

    lead = "…" if start else ""
    shown = lead + "".join(cell(ch) for ch in line[start : start + _SHOWN_WIDTH])
    pad = " " * len(lead) + "".join(width(ch) for ch in line[start : column - 1])
    gutter = " " * len(str(number))
    return f"  {number} | {shown}", f"  {gutter} | {pad}^"


def _raw_description(path: Path) -> str:
    """Best-effort description of a broken preset, so `presets list` still says what it was."""
    try:
        value = _read_toml(path).get("description", "")
    except PresetError:
        return ""
    return value if isinstance(value, str) else ""


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`extends` merges exactly like `-p base -p over` (nested [params] tables key by key)."""
    from sdcli.payload import merge_values

    return merge_values([copy_toml(base), copy_toml(over)])


# --- saving --------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    """A preset name becomes a file name: keep it portable and unable to leave the directory."""
    if name.endswith(".toml"):
        raise PresetError(f"invalid preset name '{name}'", hint="leave out .toml")
    reserved = re.fullmatch(_WINDOWS_RESERVED, name)
    if not re.fullmatch(_SAFE_NAME, name) or name.endswith(".") or reserved:
        raise PresetError(
            f"invalid preset name '{name}'",
            hint="use up to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        )


def _check_shadowing(name: str, path: Path, *, extends: str | None) -> None:
    """Refuse a new user preset that hides another of its name, or that another one hides.

    Hiding the built-in `chibi` would silently change every preset that extends it; a preset
    that `extends` the one it hides keeps its settings, so that is allowed.
    """
    user_dir = path.parent
    for source, directory in search_path():
        other = directory / f"{name}.toml"
        if _same_dir(directory, user_dir) or not _is_file(other):
            continue
        if source == "path":  # SDCLI_PRESETS_PATH comes before the user directory
            raise PresetError(
                f"preset '{name}' in {other} comes first on the search path, "
                "so a new one of that name would never be used",
                hint="pick another name, or use --force to save it anyway",
            )
        if extends == name:
            return
        raise PresetError(
            f"a {source} preset '{name}' exists ({other}); a new one would hide it, "
            "and presets that extend it would lose its settings",
            hint=f"pick another name, build on it with --extends {name}, or use --force to hide it",
        )


def _check_parent(name: str, parent: str, path: Path) -> None:
    """Refuse to save a preset whose parent is missing or broken, or which would close a cycle."""
    parent_path = _find_parent(name, parent, path)
    if parent_path.resolve() == path.resolve():
        raise PresetError(f"{path}: 'extends' makes a cycle: {name} -> {parent}")
    parent_values = validate_values(_read_toml(parent_path), where=str(parent_path))
    chain = [(name, path), (parent, parent_path)]
    _resolve(parent, parent_path, parent_values, chain=chain, pending=path)
