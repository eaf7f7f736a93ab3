"""`sdcli presets`: list, show, create, edit and locate TOML presets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdcli.cli import options as opts
from sdcli.cli import render
from sdcli.cli.completion import complete_preset
from sdcli.errors import PresetError, UnknownPresetError, UsageError

if TYPE_CHECKING:
    from sdcli.presets import Preset, PresetSource


PresetName = Annotated[
    str,
    typer.Argument(
        help="Preset name, or a path to a .toml file.",
        metavar="NAME",
        autocompletion=complete_preset,
    ),
]

app = typer.Typer(
    help=(
        "List, show, create and edit presets (TOML files).\n\n"
        "Search path, first hit wins: each directory in SDCLI_PRESETS_PATH, the user presets "
        "directory, then the built-ins. `sdcli presets path` prints it."
    ),
    no_args_is_help=True,
)

LIST_HELP = """\
List presets from every directory on the search path, each name once (the first hit wins).

Columns: name, source (path, user or built-in), description, and notes: which sources a
preset shadows, or why a broken file cannot be loaded. Piped: tab-separated lines.
--json: one JSON object per line (name, source, path, description, shadows, error).

[bold]Examples[/]

  sdcli presets list
  sdcli presets list --json | jq -r 'select(.error) | .path'
"""

SHOW_HELP = """\
Show a preset's settings after `extends` is resolved (the values generate would use).

Piped: tab-separated "key value" lines; \\[params] entries as "params.KEY JSON".

[bold]Examples[/]

  sdcli presets show chibi
  sdcli presets show chibi --toml > mine.toml   [dim]# a stand-alone copy to edit[/]
"""

NEW_HELP = """\
Create a user preset from flags (the same as generate's) and print its path on stdout.

--from-image takes an image's settings (sampler, steps, size, model, hires…) as the lowest
layer, leaving out its prompt and seed; flags win over it. --set KEY=VALUE goes into \\[params]
(sent to the web UI as is). An existing preset is kept unless --force, and so is the
name of a built-in or any other preset on the search path: a new one would hide it (or be
hidden), and presets that extend it would change. --extends NAME builds on the one it hides.

[bold]Examples[/]

  sdcli presets new portrait --extends sd15 -W 512 -H 768 --description "tall SD 1.5"
  sdcli presets new fav --from-image out/best.png --steps 30
  sdcli presets new hires --extends sdxl --set enable_hr=true --set hr_scale=1.5
  sdcli presets new chibi --extends chibi --steps 30   [dim]# your chibi, built on the built-in[/]
"""

EDIT_HELP = """\
Open a preset in $VISUAL or $EDITOR (default vi), then check it and report any errors.

A built-in preset is copied to the user presets directory first, so the copy shadows it.
After an edit with errors: (e)dit again, (d)iscard the changes (the file is put back as it
was) or (k)eep them (exit 2). Needs a terminal: when stdin is not one, exit 2 without
starting the editor.

[bold]Examples[/]

  sdcli presets edit chibi
  EDITOR=nano sdcli presets edit mine
"""

PATH_HELP = """\
Print where presets are looked for, or which file a preset comes from.

Without NAME: the search path, one directory per line, first hit wins.
With NAME: the file that preset NAME is loaded from.

[bold]Examples[/]

  sdcli presets path
  sdcli presets path chibi
  $EDITOR "$(sdcli presets path mine)"
"""


def register(root: typer.Typer) -> None:
    """`sdcli presets` and its commands."""
    root.add_typer(app, name="presets")


def _one_line(text: str) -> str:
    return " ".join(text.split())


@app.command("list", help=LIST_HELP)
def list_(
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per preset on stdout.")
    ] = False,
) -> None:
    from sdcli.presets import list_presets

    infos = list_presets()
    if json_lines:
        for info in infos:
            render.result_json(info.as_dict())
        return
    if not infos:
        render.note("no presets found; `sdcli presets path` shows where they are looked for")
        return
    rows = []
    for p in infos:
        notes = []
        if p.shadows:
            notes.append("shadows " + ", ".join(p.shadows))
        if p.error:
            notes.append("error: " + _one_line(p.error))
        rows.append([p.name, p.source, _one_line(p.description), "; ".join(notes)])
    render.table(None, ["name", "source", "description", "notes"], rows)
    broken = sum(1 for p in infos if p.error)
    if broken:
        render.warn(f"{broken} preset file(s) cannot be loaded (see notes)")


def _show_value(value: Any) -> str:
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return json.dumps(value, ensure_ascii=False)


@app.command("show", help=SHOW_HELP)
def show(
    name: PresetName,
    toml: Annotated[
        bool, typer.Option("--toml", help="Print the merged preset as TOML on stdout.")
    ] = False,
) -> None:
    from sdcli.presets import dumps_preset, load_preset

    preset = load_preset(name)
    merged = _merged(preset)
    if toml:
        render.result_text(dumps_preset(merged))
        return
    origin = f"{preset.name} ({preset.source}: {preset.path})"
    if preset.parents:
        origin += ", extends " + " -> ".join(preset.parents)
    render.note(origin)
    rows = []
    for key, value in merged.items():
        if key == "params" and isinstance(value, dict):
            rows += [[f"params.{k}", _show_value(v)] for k, v in value.items()]
        else:
            rows.append([key, _show_value(value)])
    render.table(None, ["key", "value"], rows)


def _merged(preset: Preset) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    if preset.description:
        merged["description"] = preset.description
    merged.update(preset.values)
    return merged


@app.command("new", help=NEW_HELP)
@opts.with_value_flags
def new(
    name: Annotated[
        str, typer.Argument(help="Name of the new preset (NAME.toml).", metavar="NAME")
    ],
    *,
    flags: dict[str, Any],  # the value flags (--steps, --cfg…): see options.with_value_flags
    description: Annotated[
        str | None, typer.Option(help="One line shown by `sdcli presets list`.")
    ] = None,
    extends: Annotated[
        str | None,
        typer.Option(
            help="Preset to start from; this one's values win.", autocompletion=complete_preset
        ),
    ] = None,
    prompt_template: Annotated[
        str | None,
        typer.Option(help='Text around the prompt, with {prompt}: "masterpiece, {prompt}".'),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A \\[params] entry: KEY=VALUE (VALUE as JSON, else text)."),
    ] = None,
    from_image: Annotated[
        Path | None,
        typer.Option("--from-image", help="Start from the settings stored in this image."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing preset.")] = False,
) -> None:
    from sdcli.plan import preset_from_flags
    from sdcli.preset_schema import FLAG_LABELS
    from sdcli.presets import save_preset

    values: dict[str, Any] = {
        "description": description,
        "extends": extends,
        "prompt_template": prompt_template,
        **flags,
    }
    values = preset_from_flags(values, set_ or [], from_image, labels=FLAG_LABELS)
    path = save_preset(name, values, force=force)
    render.result(str(path))


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _editor_command() -> list[str]:
    import os
    import shlex

    from sdcli.config import editor

    raw = editor()
    try:
        command = shlex.split(raw, posix=os.name != "nt")
    except ValueError as exc:
        raise UsageError(f"cannot parse the editor command {raw!r}: {exc}") from exc
    if not command:
        raise UsageError("$VISUAL/$EDITOR is empty")
    return command


def _run_editor(command: list[str], path: Path) -> None:
    import subprocess

    try:
        done = subprocess.run([*command, str(path)], check=False)
    except OSError as exc:
        raise UsageError(
            f"cannot start the editor {command[0]!r}: {exc.strerror or exc}",
            hint="set $VISUAL or $EDITOR",
        ) from exc
    if done.returncode != 0:
        raise UsageError(
            f"the editor exited with status {done.returncode}; {path} may be unchanged"
        )


def _editable_copy(name: str, source: PresetSource, path: Path) -> tuple[Path, bytes | None]:
    """The file to edit: a built-in is copied to the user directory first (returns its bytes)."""
    if source != "built-in":
        return path, None
    from sdcli.config import user_presets_dir

    target = user_presets_dir() / path.name
    original = path.read_bytes()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as handle:
            handle.write(original)
    except FileExistsError:
        # Only reachable when SDCLI_PRESETS_PATH shadows both: edit the user file that exists.
        return target, None
    except OSError as exc:
        raise UsageError(
            f"cannot copy built-in preset '{name}' to {target}: {exc.strerror}"
        ) from exc
    render.note(f"copied built-in preset '{name}' to {target}")
    return target, original


@app.command("edit", help=EDIT_HELP)
def edit(
    name: PresetName,
) -> None:
    from sdcli.presets import find_preset, load_preset

    try:
        source, found = find_preset(name)
    except UnknownPresetError as exc:
        import shlex

        hint = f"to create it: sdcli presets new {shlex.quote(name)}"
        raise UnknownPresetError(exc.message, hint=hint) from None
    if not _stdin_is_tty():
        raise UsageError(
            "an editor needs a terminal, and stdin is not one",
            hint=f"edit the file directly: sdcli presets path {name}",
        )
    path, copied_from = _editable_copy(name, source, found)
    before = copied_from if copied_from is not None else path.read_bytes()
    command = _editor_command()
    while True:
        _run_editor(command, path)
        if copied_from is not None and path.read_bytes() == copied_from:
            path.unlink()
            render.note(f"no changes; removed the copy, '{name}' is the built-in again")
            render.result(str(found))
            return
        try:
            load_preset(str(path))
        except PresetError as exc:
            render.failure(exc)
            answer = _ask_after_errors()
            if answer == "e":
                continue
            if answer == "d":
                render.result(str(_discard(name, path, before, found, copied_from is not None)))
                return
            raise PresetError(f"{path} was saved with errors; generate will refuse it") from None
        render.result(str(path))
        return


def _ask_after_errors() -> str:
    """visudo's question: edit again, discard the changes, or keep them. Ctrl-D or Ctrl-C keeps.

    Only reached with a terminal on stdin (`edit` refuses to start without one).
    """
    while True:
        try:
            answer: str = typer.prompt(
                "What now? (e)dit again, (d)iscard the changes, (k)eep them with the errors",
                default="e",
                err=True,
            )
        except typer.Abort:
            sys.stderr.write("\n")
            return "k"
        word = answer.strip().lower()
        if word and word in ("e", "edit", "d", "discard", "k", "keep"):
            return word[0]
        render.note("answer e (edit again), d (discard) or k (keep)")


def _discard(name: str, path: Path, before: bytes, found: Path, copied: bool) -> Path:
    """Put the preset back as it was before the editor ran; returns the file it comes from."""
    if copied:
        path.unlink()
        render.note(f"discarded the changes; removed the copy, '{name}' is the built-in again")
        return found
    from sdcli.output import write_atomic

    write_atomic(path, before, overwrite=True)
    render.note(f"discarded the changes; {path} is as it was")
    return path


@app.command("path", help=PATH_HELP)
def path(
    name: Annotated[
        str | None,
        typer.Argument(help="A preset name.", metavar="[NAME]", autocompletion=complete_preset),
    ] = None,
) -> None:
    from sdcli.presets import find_preset, search_path

    if name is None:
        for _, directory in search_path():
            render.result(str(directory))
        return
    render.result(str(find_preset(name)[1]))
