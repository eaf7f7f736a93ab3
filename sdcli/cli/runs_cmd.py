"""`sdcli runs` and `sdcli resume`, and the journal a run of many units keeps (`--resume`)."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sdcli.cli import render
from sdcli.cli.options import JsonLines
from sdcli.cli.state import AppState
from sdcli.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sdcli.job import Job
    from sdcli.journal.keeper import RunJournal
    from sdcli.journal.record import PromptSource
    from sdcli.journal.store import RunInfo

RUNS_HELP = """\
List the runs of many units (prompts x --count x init images) and how far each got, newest
first: done/total units, failed ones, when, where the images go.

At a terminal: a table. Piped: one tab-separated line per run (id, local time, state, done,
total, failed, output folder, prompts). --json: one JSON object per line.

[bold]Examples[/]

  sdcli runs
  sdcli runs --json | jq 'select(.state == "unfinished") | .id'
"""

RESUME_HELP = """\
Finish a run that stopped (Ctrl-C, a crash, kill -9, a reboot) from its journal alone: only
the units not done are made, with the seeds and file names planned; each ends saved once.
RUN is an id from `sdcli runs`; the last unfinished run by default. The run's server is used
unless --url is given.

[bold]Examples[/]

  sdcli resume
  sdcli resume 12 --keep-going
  sdcli --url http://gpu2:7860 resume 12
"""


def journal_path() -> Path:
    from sdcli.config import runs_file

    return runs_file()


def open_for_generate(
    state: AppState, job: Job, source: PromptSource, *, resume: bool, quiet: bool
) -> RunJournal | None:
    """The journal of this command's run: with `resume`, the last run of the same job if it
    is unfinished (None, nothing to do, when it is done; a new run when there is none; refused
    when the output folder's unfinished run is of another job); else a new run."""
    from sdcli.journal import store
    from sdcli.journal.keeper import RunJournal
    from sdcli.journal.record import differences, job_key, job_record

    path = journal_path()
    conn = store.connect(path)
    try:
        record = job_record(job)
        if resume:
            latest = store.latest_with_key(conn, job_key(record, source))
            if latest is not None and latest[1]:
                if not quiet:
                    render.note(
                        f"run {latest[0]} of this command is done: nothing to resume "
                        "(without --resume, the command starts a new run)"
                    )
                conn.close()
                return None
            if latest is not None:
                journal = RunJournal(conn, path, latest[0], job)
                _reconcile(journal, quiet=quiet)
                return journal
            others = store.unfinished_in(conn, record["output_dir"])
            if others:
                other = others[0]
                changed = differences(json.loads(other["job"]), record) or ["the prompts' source"]
                raise UsageError(
                    f"--resume: unfinished run {other['id']} saving into {record['output_dir']} "
                    f"was started with other settings ({', '.join(changed)} differ); "
                    "this command is another job",
                    hint=f"`sdcli resume {other['id']}` finishes it as it was started; "
                    "without --resume this command starts a new run",
                )
            if not quiet:
                render.note("nothing to resume for this command: starting a new run")
        from sdcli.history.recorder import scrub_command

        return RunJournal.start(
            conn,
            path,
            job,
            source,
            server=" ".join(_servers_of(state)),
            command=scrub_command(["sdcli", *sys.argv[1:]]),
        )
    except BaseException:
        conn.close()
        raise


def _servers_of(state: AppState) -> list[str]:
    """The run's servers as `sdcli resume` gives them to --url again: the --url values as
    typed (a URL without its user and password, a [servers.NAME] table's name), else the URLs
    the settings resolved."""
    from sdcli.history.recorder import scrub_url

    if state.url:
        given = [state.url] if isinstance(state.url, str) else list(state.url)
        return [scrub_url(u) for u in given]
    s = state.settings
    return [server.url for server in s.servers] if len(s.servers) > 1 else [s.url]


def _reconcile(journal: RunJournal, *, quiet: bool) -> None:
    from sdcli.journal.keeper import read_seed_and_prompt

    found = journal.reconcile(read_seed_and_prompt)
    for path in found.removed:
        render.warn(f"removed {path}: its unit was left half-made and is made again")
    if found.temporary:
        render.warn(f"removed {found.temporary} temporary file(s) a killed sdcli left behind")
    if quiet:
        return
    recovered = f" ({found.recovered} found saved on disk)" if found.recovered else ""
    more = "" if journal.all_read else "+"
    done = f"{found.done} of {found.total}{more} units done"
    render.note(f"resuming run {journal.run_id}: {done}{recovered}")


def finish(journal: RunJournal, *, all_read: bool, ended: BaseException | None) -> str | None:
    """After the run: mark what is done; for a run not done, how to go on."""
    from sdcli.journal.store import JournalUnavailable

    try:
        complete = journal.finish(all_read)
        done, total = journal.counts()
    except JournalUnavailable as exc:
        if ended is None:
            raise
        render.warn(exc.message)
        return None
    finally:
        journal.close()
    if complete:
        return None
    more = "" if all_read else "+"
    return (
        f"run {journal.run_id}: {done} of {total}{more} units done; to do the rest: "
        f"sdcli resume {journal.run_id} (or this command again with --resume)"
    )


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar.")]
NoShow = Annotated[
    bool, typer.Option("--no-show", help="No thumbnail under each saved path (on a terminal).")
]
NoPreview = Annotated[
    bool, typer.Option("--no-preview", help="No live preview above the progress bar.")
]
NoHistory = Annotated[
    bool, typer.Option("--no-history", help="Do not record this run in the history.")
]


def register(app: typer.Typer) -> None:
    @app.command("runs", help=RUNS_HELP, short_help="Runs of many requests and how far they got.")
    def runs(
        ctx: typer.Context,
        limit: Annotated[
            int, typer.Option("-n", "--limit", min=0, help="At most N runs; 0: all.")
        ] = 20,
        json_lines: Annotated[
            bool, typer.Option("--json", help="One JSON object per line.")
        ] = False,
    ) -> None:
        from sdcli.journal import store

        path = journal_path()
        conn = store.open_existing(path)
        if conn is None:
            if not json_lines:
                render.note(f"no run journaled yet ({path})")
            return
        with closing(conn):
            found = list(store.runs(conn, limit=limit or None))
        if json_lines:
            for info in found:
                render.result_json(info.as_json())
            return
        if render.wants_table():
            _table(found, render.err_console().width)
            return
        render.table(None, PIPE_COLUMNS, [_row(info) for info in found])

    @app.command(
        "resume",
        help=RESUME_HELP,
        short_help="Finish a run that stopped (the last unfinished one by default).",
    )
    def resume(
        ctx: typer.Context,
        run: Annotated[
            int | None, typer.Argument(help="The run's id (sdcli runs).", metavar="[RUN]")
        ] = None,
        json_lines: JsonLines = False,
        quiet: Quiet = False,
        no_progress: NoProgress = False,
        no_show: NoShow = False,
        no_preview: NoPreview = False,
        keep_going: Annotated[
            bool | None,
            typer.Option(
                "--keep-going/--no-keep-going",
                help="Go on after a failed prompt \\[default: as the run was started].",
                show_default=False,
            ),
        ] = None,
        retries: Annotated[
            int | None,
            typer.Option(
                min=0,
                help="Retry connection errors and 502/503/504 \\[default: as the run was started].",
                show_default=False,
            ),
        ] = None,
        no_history: NoHistory = False,
    ) -> None:
        resume_run(
            ctx.obj,
            run,
            json_lines=json_lines,
            quiet=quiet,
            no_progress=no_progress,
            no_show=no_show,
            no_preview=no_preview,
            keep_going=keep_going,
            retries=retries,
            history=not no_history,
        )


PIPE_COLUMNS = ["RUN", "STARTED", "STATE", "DONE", "TOTAL", "FAILED", "OUTPUT", "PROMPTS"]
TABLE_COLUMNS = ["RUN", "STARTED", "STATE", "UNITS", "FAILED", "OUTPUT", "PROMPTS"]
MIN_PATH_WIDTH = 8  # what is left of a path column on a very narrow terminal


def _table(found: list[RunInfo], width: int) -> None:
    """At a terminal, one line per run that fits the width, as `gh run list` keeps its rows:
    the time to the minute, units as done/total, FAILED only when a run failed any, and the two
    paths, shown from here (relative, or ~), cut from the left when they must (their ends say
    most) to share the room the other columns leave."""
    from rich.cells import cell_len

    from sdcli.journal.store import local_time

    fixed = [
        [
            str(info.id),
            local_time(info.created, short=True),
            info.state,
            f"{info.done}/{info.total}{'' if info.all_read else '+'}",
            str(info.failed) if info.failed else "",  # a column of blanks is left out
        ]
        for info in found
    ]
    kept = [i for i in range(len(fixed[0]) if fixed else 0) if any(row[i] for row in fixed)]
    used = sum(max(cell_len(TABLE_COLUMNS[i]), *(cell_len(r[i]) for r in fixed)) for i in kept)
    columns = len(kept) + 2
    room = width - 1 - used - (3 * columns - 1)  # a space each side of a cell, a rule between
    paths = [(_from_here(info.output_dir), _prompts_from_here(info)) for info in found]
    widest = [
        max([cell_len(TABLE_COLUMNS[5]), *(cell_len(out) for out, _ in paths)]),
        max([cell_len(TABLE_COLUMNS[6]), *(cell_len(source) for _, source in paths)]),
    ]
    out_width, prompts_width = _share(widest, room)
    rows = [
        [*row, _cut_left(out, out_width), _cut_left(source, prompts_width)]
        for row, (out, source) in zip(fixed, paths, strict=True)
    ]
    render.table(None, TABLE_COLUMNS, rows)


def _prompts_from_here(info: RunInfo) -> str:
    """Where the run's prompts came from: `stdin`, `command line`, or the file's path from
    here (`./stdin` for a file of that name)."""
    from sdcli.journal.record import PromptSource

    source = PromptSource.from_json(info.source)
    if source.kind != "file" or source.path is None:
        return source.describe()
    path = _from_here(source.path)
    return f"./{path}" if path in ("stdin", "command line") else path


def _share(widest: list[int], room: int) -> tuple[int, int]:
    """The widths of two columns that want `widest` and get `room` between them: the narrower
    one whole when it takes at most half, the rest to the other."""
    a, b = widest
    if a + b <= room:
        return a, b
    half = room // 2
    if a <= half:
        return a, max(room - a, MIN_PATH_WIDTH)
    if b <= half:
        return max(room - b, MIN_PATH_WIDTH), b
    return max(half, MIN_PATH_WIDTH), max(room - half, MIN_PATH_WIDTH)


def _cut_left(text: str, width: int) -> str:
    """`text` in at most `width` cells: its end, after an ellipsis."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    kept = ""
    for char in reversed(text):
        if cell_len(char + kept) > width - 1:
            break
        kept = char + kept
    return "…" + kept


def _from_here(path: str) -> str:
    """A path as it reads from the current folder: relative below it (not below `/`), `~/…`
    below home; else as it is."""
    where = Path(path)
    for base, name in ((Path.cwd, "."), (Path.home, "~")):
        try:
            folder = base()
            if folder == Path(folder.anchor):
                continue
            inside = where.relative_to(folder)
        except (ValueError, OSError, RuntimeError):  # elsewhere, a folder gone, no home
            continue
        if inside == Path("."):
            return name
        return str(inside) if name == "." else f"~/{inside}"
    return path


def _row(info: RunInfo) -> list[str]:
    from sdcli.journal.record import PromptSource
    from sdcli.journal.store import local_time

    return [
        str(info.id),
        local_time(info.created),
        info.state,
        str(info.done),
        f"{info.total}{'' if info.all_read else '+'}",
        str(info.failed),
        info.output_dir,
        PromptSource.from_json(info.source).describe(),
    ]


def resume_run(
    state: AppState,
    run: int | None,
    *,
    json_lines: bool,
    quiet: bool,
    no_progress: bool,
    no_show: bool,
    no_preview: bool,
    keep_going: bool | None,
    retries: int | None,
    history: bool,
) -> None:
    """`sdcli resume`: the Job rebuilt from the journal, run over what is not done."""
    from dataclasses import replace

    from sdcli.cli.generate_cmd import _run, history_recorder, picture_mode
    from sdcli.journal import store
    from sdcli.journal.keeper import RunJournal
    from sdcli.journal.record import PromptSource, job_from_record

    path = journal_path()
    conn = store.open_existing(path)
    if conn is None:
        if run is not None:
            raise UsageError(f"no run {run}: no run was journaled yet ({path})")
        render.note(f"nothing to resume: no run journaled yet ({path})")
        return
    try:
        run_id = run if run is not None else store.last_unfinished(conn)
        if run_id is None:
            render.note("nothing to resume: every run is done (sdcli runs lists them)")
            conn.close()
            return
        info = store.run_info(conn, run_id)
        if info is None:
            raise UsageError(f"no run {run_id} in the run journal", hint="sdcli runs lists them")
        if info.finished:
            render.note(f"run {run_id} is done: {info.done} of {info.total} units")
            conn.close()
            return
        row = conn.execute("SELECT job, source FROM runs WHERE id = ?", (run_id,)).fetchone()
        record = json.loads(row["job"])
        source = PromptSource.from_json(json.loads(row["source"]))
        if not state.url and info.server:  # the run's servers, unless --url says otherwise
            urls = info.server.split()
            state.url = urls[0] if len(urls) == 1 else urls
        job = job_from_record(record, ())
        if keep_going is not None:
            job = replace(job, keep_going=keep_going)
        if retries is not None:
            job = replace(job, retries=retries)
        journal = RunJournal(conn, path, run_id, job)
    except BaseException:
        conn.close()
        raise
    more, all_read = _source_again(source, info.all_read)
    job = replace(job, prompts=journal.prompts(more))
    journal.job = job
    try:
        _reconcile(journal, quiet=quiet)
    except BaseException:
        journal.close()
        raise
    if not all_read and not quiet:
        render.note(
            f"run {run_id} read its prompts from {source.describe()} and stopped before the "
            f"last: only the {journal.read_so_far()} it read are done here (to go on with the "
            f"others: sdcli resume {run_id} < PROMPTS, or the same command with --resume)"
        )
    show = not (quiet or no_progress) and render.stderr_is_tty()
    pictures = picture_mode(state, quiet=quiet)
    _run(
        state,
        job,
        show,
        json_lines=json_lines,
        quiet=quiet,
        many=True,
        thumbnails=pictures if not no_show and state.settings.thumbnails else None,
        preview=show and pictures is not None and not no_preview and state.settings.live_preview,
        history=history_recorder(state, job, None) if history else None,
        journal=journal,
        all_read=all_read,
    )


def _source_again(source: PromptSource, all_read: bool) -> tuple[Iterator[str] | None, bool]:
    """The run's prompt source read again from its start, when the run had not read it all:
    its file, or stdin when it is not a terminal. (None, False) when it cannot be read."""
    if all_read or source.kind == "words":
        return None, True
    from sdcli.prompts import prompt_lines, read_prompts

    if source.kind == "file" and source.path is not None and Path(source.path).is_file():
        import io

        return read_prompts([], Path(source.path), io.BytesIO()), True
    if source.kind == "stdin" and not sys.stdin.isatty():
        from sdcli.cli.generate_cmd import _stdin_bytes

        return prompt_lines(_stdin_bytes(), "stdin"), True
    return None, False
