"""`sdcli history`: search what was generated, show one generation, locate or clear the file."""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdcli.cli import render
from sdcli.cli.helpformat import HelpGroup
from sdcli.cli.state import AppState
from sdcli.errors import UsageError

if TYPE_CHECKING:
    import sqlite3

HELP = """\
Every generation remembered: search it, show one, re-run one (`sdcli rerun ID`).

`sdcli history [QUERY]` is `sdcli history list [QUERY]`.
"""

LIST_HELP = """\
List recorded generations, newest first; QUERY words must all appear in the prompt or the
negative prompt (as words or the start of words).

At a terminal: a table. Piped: one tab-separated line per generation (id, local time, outcome,
images, seed, model, prompt). --json: one JSON object per line, with the request body and the
images.

[bold]Examples[/]

  sdcli history
  sdcli history lighthouse --since 3d
  sdcli history --failed -n 5
  sdcli history --preset chibi --json | jq -r '.images[].path'
  sdcli history --clear --yes                 [dim]# delete every row[/]
"""

SHOW_HELP = """\
Show everything recorded about one generation: settings, server, the request body as sent,
the command line, and its images (a file that no longer exists is marked).
"""

PATH_HELP = """\
Print the history database's path (SDCLI_HISTORY or the config key `history_file` move it).

[bold]Examples[/]

  datasette "$(sdcli history path)"
"""


class HistoryGroup(HelpGroup):
    """`history WORDS…` and `history --flags` mean `history list …`: the list is the default."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is None or (first not in self.commands and first not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(help=HELP, cls=HistoryGroup)


def _path(ctx: typer.Context) -> Path:
    state: AppState = ctx.find_root().obj
    path = state.settings.history_path
    assert path is not None  # always set by load_settings
    return path


def _open(ctx: typer.Context) -> sqlite3.Connection | None:
    from sdcli.history.store import open_existing

    return open_existing(_path(ctx))


HISTORY_COLUMNS = ["ID", "WHEN", "OUTCOME", "IMAGES", "SEED", "MODEL", "PROMPT"]


@app.command("list", help=LIST_HELP)
def list_(
    ctx: typer.Context,
    query: Annotated[
        list[str] | None, typer.Argument(help="Words to find in prompts.", metavar="[QUERY]...")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model (part of its name or hash).")
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", "-p", help="Only runs that used this preset.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="Only since: 30m, 12h, 3d, 2w or a date."),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only failed or interrupted generations.")
    ] = False,
    limit: Annotated[
        int, typer.Option("-n", "--limit", min=0, help="At most N rows; 0: all.")
    ] = 20,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    clear: Annotated[
        bool, typer.Option("--clear", help="Delete the whole history (asks first).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="--clear without asking.")] = False,
) -> None:
    from sdcli.history import store

    if clear:
        _clear(ctx, yes=yes)
        return
    filters = store.Filters(
        query=" ".join(query or []),
        model=model,
        preset=preset,
        since=store.parse_since(since) if since is not None else None,
        failed=failed,
        limit=limit or None,
    )
    conn = _open(ctx)
    if conn is None:
        if not json_lines:
            render.note(f"nothing recorded yet ({_path(ctx)})")
        return
    with closing(conn):
        rows = store.search(conn, filters)
        if json_lines:
            images = store.images(conn, [row["id"] for row in rows])
            for row in rows:
                render.result_json(store.as_json(row, images[row["id"]]))
            return
    if not rows and render.wants_table():
        render.note("no generation matches")
        return
    render.table(
        None,
        HISTORY_COLUMNS,
        [summary_row(row) for row in rows],
        cut="PROMPT",
    )


def summary_row(row: Any) -> list[str]:
    """One generation as the table's cells (also interactive mode's `/history`)."""
    from sdcli.history.store import local_time

    seed = row["image_seed"] if row["image_seed"] is not None else row["seed"]
    model = row["model"] or ""
    return [
        str(row["id"]),
        local_time(row["started"]),
        row["outcome"],
        str(row["image_count"]),
        "" if seed is None else str(seed),
        model,
        row["prompt"],
    ]


def _clear(ctx: typer.Context, *, yes: bool) -> None:
    """Delete every row; asks at a terminal, needs --yes anywhere else (a script never hangs)."""
    from sdcli.history import store

    path = _path(ctx)
    conn = store.open_existing(path)
    if conn is None:
        render.note(f"nothing to clear ({path})")
        return
    with closing(conn):
        count = int(conn.execute("SELECT count(*) FROM generations").fetchone()[0])
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    "--clear deletes the whole history: give --yes too (stdin is not a terminal)"
                )
            if not typer.confirm(f"Delete all {count} generation(s) from {path}?", err=True):
                render.note("nothing deleted")
                return
        deleted = store.clear(conn)
    render.note(f"deleted {deleted} generation(s) from {path}")


@app.command("show", help=SHOW_HELP)
def show(
    ctx: typer.Context,
    gen_id: Annotated[int, typer.Argument(help="A generation's ID.", metavar="ID")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    from sdcli.history import store

    conn = _open(ctx)
    row = store.generation(conn, gen_id) if conn is not None else None
    if conn is None or row is None:
        raise UsageError(
            f"no generation {gen_id} in the history", hint="`sdcli history` lists them"
        )
    with closing(conn):
        doc = store.as_json(row, store.images(conn, [gen_id])[gen_id])
    if json_out:
        render.result_json(doc)
        return
    for key, value in show_lines(doc):
        if value:
            render.result(f"{key:<16}{render.printable(value)}")


def show_lines(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """`history show`: one `key  value` line each; images last, one line each."""
    import json

    from sdcli.history.store import local_time

    outcome = doc["outcome"]
    if doc["seconds"] is not None:
        outcome += f" after {doc['seconds']:.1f} s"
    lines = [
        ("id", str(doc["id"])),
        ("started", f"{local_time(doc['started'])} ({doc['started']})"),
        ("outcome", outcome),
    ]
    if doc["error"]:
        lines.append(("error", doc["error"]))
    server = doc["server"]
    about = " ".join(x for x in (doc["flavour"], doc["version"]) if x)
    lines.append(("prompt", doc["prompt"]))
    if doc.get("template"):
        lines.append(("template", doc["template"]))
    lines += [
        ("negative prompt", doc["negative_prompt"]),
        ("seed", "" if doc["seed"] is None else str(doc["seed"])),
        ("model", " ".join(x for x in (doc["model"], _bracket(doc["model_hash"])) if x)),
        ("server", f"{server} ({about})" if about else server),
        ("mode", doc["mode"]),
        ("batch", f"{doc['batch']} of {doc['batches']}"),
        ("presets", ", ".join(doc["presets"])),
    ]
    if doc["rerun_of"] is not None:
        lines.append(("rerun of", str(doc["rerun_of"])))
    if doc["command"]:
        import shlex

        lines.append(("command", shlex.join(doc["command"])))
    lines.append(("request", json.dumps(doc["request"], ensure_ascii=False)))
    for image in doc["images"]:
        text = image["path"]
        if image["seed"] is not None:
            text += f"  seed {image['seed']}"
        if image["interrupted"]:
            text += "  interrupted"
        if not image["exists"]:
            text += "  (file no longer exists)"
        lines.append(("image", text))
    return lines


def _bracket(text: str | None) -> str:
    return f"[{text}]" if text else ""


@app.command("path", help=PATH_HELP)
def path(ctx: typer.Context) -> None:
    render.result(str(_path(ctx)))


RERUN_HELP = """\
Send a recorded request again: `ID` from `sdcli history`, or an image file (its stored
parameters, as `generate --from-image`; its history row is found by the file's sha256).

The request is the one sent before, field for field, with the seed its first image got; any
`generate` flag after the ID changes it (`--seed -1`, `--steps 40`, `-o DIR`, `--url` before
the command for another server). The new run is recorded, linked to the old one.

[bold]Examples[/]

  sdcli rerun 12
  sdcli rerun 12 --seed -1 -o out/           [dim]# same settings, a new seed[/]
  sdcli --url http://gpu2:7860 rerun 12      [dim]# on another server[/]
  sdcli rerun out/best.png --steps 40
"""


def register(root: typer.Typer) -> None:
    """`sdcli rerun` and the `sdcli history` group."""
    register_rerun(root)
    root.add_typer(app, name="history", cls=HistoryGroup)


def register_rerun(root: typer.Typer) -> None:
    @root.command(
        "rerun",
        help=RERUN_HELP,
        short_help="Send a recorded request again: an ID from `sdcli history`, or an image file.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def rerun(
        ctx: typer.Context,
        target: Annotated[
            str, typer.Argument(help="A generation's ID, or an image file.", metavar="ID|IMAGE")
        ],
    ) -> None:
        extra = list(ctx.args)
        if target.isdigit():
            args = [*extra, "--rerun", target]
        else:
            from sdcli.history.replay import find_image

            image = Path(target)
            if not image.is_file():
                raise UsageError(f"{target!r} is neither a generation ID nor an image file")
            args = ["--from-image", target, *extra]
            found = find_image(_path(ctx), image)
            if found is not None:
                args += ["--rerun-of", str(found)]
        command = _generate_command()
        # run in this process's context: exit codes, Ctrl-C and usage errors as generate's own
        with command.make_context("rerun", args, parent=ctx.parent) as sub:
            command.invoke(sub)


def _generate_command() -> Any:
    """`sdcli generate` as a click command, to run it with a rerun's arguments."""
    from typer.main import get_command

    from sdcli.cli import generate_cmd

    commands = typer.Typer()
    generate_cmd.register(commands)  # generate and its siblings (img2img)
    return get_command(commands).commands["generate"]  # type: ignore[attr-defined]
