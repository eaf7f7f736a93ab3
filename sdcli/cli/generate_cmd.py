"""`sdcli generate`: turn prompts into saved images; paths (or JSON lines) on stdout."""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from sdcli.cli import options as opts
from sdcli.cli import render
from sdcli.cli.state import AppState
from sdcli.datatypes import frozen
from sdcli.errors import ExitCode, SdcliError, UsageError

if TYPE_CHECKING:
    from sdcli.cli.pictures import Mode
    from sdcli.history.recorder import HistoryRecorder
    from sdcli.job import Job
    from sdcli.journal.keeper import RunJournal
    from sdcli.names.request import Resolved
    from sdcli.plan import Cells, JobRequest
    from sdcli.run import RunSummary

HELP = """\
Generate images with txt2img and print each saved path on stdout, one per line.

Settings come from --from-image (an image's stored parameters), then presets (--preset,
later ones win), then flags, then --set. Prompt words are joined with spaces; PROMPT "-" reads
one prompt per line from stdin; with --from-image and no PROMPT, the image's prompt is used.

[bold]Examples[/]

  sdcli generate --preset chibi "1boy, solo, holding iPad, purple shirt"
  sdcli generate -p sd15 --seed 42 --count 4 -o out/ "a lighthouse at dusk"
  sdcli generate -p draft --dry-run "a cat"            [dim]# print the request, generate nothing[/]
  sdcli generate --from-image best.png --seed -1        [dim]# same settings, new seed[/]
  cat prompts.txt | sdcli generate -p sdxl - --json | jq -r .path
  for p in cat dog; do sdcli generate -q "$p"; done
  sdcli generate -p sd15 --variants 4 "a {red|blue} {cat|dog}"   [dim]# 4 random prompts[/]
  sdcli generate -p sd15 --xy steps=20,30 --xy cfg=5,7 -o out/ "a cat"   [dim]# + a grid[/]
"""


IMG2IMG_HELP = """\
Generate images from images (img2img, inpainting with --mask); print each saved path on stdout.

Every flag and preset of `generate` works here too, plus --denoise (how much of the init image
changes, 0 to 1), --resize-mode, and the inpainting flags (--mask-blur, --inpaint-fill,
--inpaint-area, --mask-padding, --invert-mask). --init takes a file, several (repeat it) or a
directory: each image in turn, every prompt. The size defaults to the init image's, rounded to
a multiple of 8. File names say which init image each came from ({init}).

[bold]Examples[/]

  sdcli img2img --init photo.png --denoise 0.4 -o out/ "oil painting"
  sdcli img2img -i shots/ -p sd15 -o out/ "watercolor"          [dim]# every image in shots/[/]
  sdcli img2img -i room.png --mask window.png --inpaint-fill original -o out/ "a red curtain"
"""


Command = Callable[..., None]
TYPING_HINT = "type one prompt per line; Ctrl-D on an empty line to finish"


def _stdin_bytes() -> BinaryIO:
    """stdin as bytes: prompts are decoded (and checked) by sdcli.prompts, not by the locale."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    return io.BytesIO(sys.stdin.read().encode("utf-8", "surrogateescape"))  # a text-only stand-in


PromptWords = Annotated[
    list[str] | None,
    typer.Argument(help='Prompt words (joined with spaces), or "-" to read stdin.'),
]
NAME_FIELDS_HELP = (
    "File name template: {date} {time} {seed} {index} {batch} {preset} "
    "{prompt_slug} {model} {sampler} {steps} {width} {height}"
)


Dynamic = Annotated[
    bool | None,
    typer.Option(
        "--dynamic/--no-dynamic",
        help="Expand every prompt as a dynamic prompt / none (default: those that use "
        "{a|b} or __wildcard__).",
        show_default=False,
    ),
]
Variants = Annotated[
    int | None,
    typer.Option(
        "--variants",
        metavar="N",
        help="Prompts a dynamic prompt gives: N random ones (default 1), or with "
        "--combinatorial the first N combinations.",
    ),
]
Combinatorial = Annotated[
    bool,
    typer.Option("--combinatorial", help="Every combination of a dynamic prompt (at most 1000)."),
]
Wildcards = Annotated[
    Path | None,
    typer.Option(
        "--wildcards",
        metavar="DIR",
        help="Where __name__ finds name.txt (env SDCLI_WILDCARDS) \\[default: wildcards in "
        "the config dir].",
        file_okay=False,
    ),
]
XY = Annotated[
    list[str] | None,
    typer.Option(
        "--xy",
        metavar="KEY=V1,V2",
        help="An X/Y/Z plot axis (repeat for Y and Z): steps=20,30, cfg=5-9 (+2), "
        "sampler=Euler,DDIM, size=512x512,768x512, prompt=cat,dog, params.FIELD=…; "
        "saves a labelled grid.",
    ),
]


@frozen
class RunOptions:
    """The options generate and img2img share besides the value flags (options.with_options)."""

    from_image: opts.FromImage = None
    set_: opts.Sets = None
    output_dir: opts.OutputDir = None
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help=NAME_FIELDS_HELP + ", img2img's {init} \\[default: {date}-{time}-{index}-{seed}, "
            "img2img's {date}-{time}-{index}-{init}-{seed}].",
        ),
    ] = None
    prompts_file: Annotated[
        Path | None,
        typer.Option(
            "--prompts-file", help="Read prompts from FILE, one per line (UTF-8, 1 MiB max)."
        ),
    ] = None
    json_lines: opts.JsonLines = False
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr.")
    ] = False
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False
    no_show: Annotated[
        bool, typer.Option("--no-show", help="No thumbnail under each saved path (on a terminal).")
    ] = False
    no_preview: Annotated[
        bool, typer.Option("--no-preview", help="No live preview above the progress bar.")
    ] = False
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the request body as JSON, names resolved with the server's lists "
            "(read only; as typed if it cannot be reached); generate nothing.",
        ),
    ] = False
    overwrite: opts.Overwrite = False
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="With many prompts: go on after a failed one (but stop, exit 3, after 3 "
            "in a row cannot reach the server).",
        ),
    ] = False
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Retry connection errors and 502/503/504 this many times, list calls "
            "included (never a 4xx or a timeout), waiting 1 s, 2 s, 4 s… between tries "
            "(env SDCLI_RETRY_BACKOFF: the first wait in seconds).",
        ),
    ] = 0
    no_history: Annotated[
        bool,
        typer.Option(
            "--no-history", help="Do not record this run in the history (config: history = false)."
        ),
    ] = False
    # prompt sweeps (README "Prompt sweeps")
    dynamic: Dynamic = None
    variants: Variants = None
    combinatorial: Combinatorial = False
    wildcards: Wildcards = None
    xy: XY = None
    no_journal: Annotated[
        bool,
        typer.Option(
            "--no-journal",
            help="Keep no run journal: a run of many requests that stops cannot be resumed.",
        ),
    ] = False
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish the unfinished run of this same command (sdcli runs): only what is not "
            "done, seeds and names as planned; a new run if there is none.",
        ),
    ] = False

    def request(
        self, prompt: list[str] | None, preset: list[str] | None, flags: dict[str, Any], **more: Any
    ) -> JobRequest:
        """The core's request for these options, the prompt words, presets and value flags."""
        from sdcli.plan import JobRequest

        return JobRequest(
            words=list(prompt or []),
            prompts_file=self.prompts_file,
            presets=list(preset or []),
            flags=flags,
            sets=list(self.set_ or []),
            from_image=self.from_image,
            output_dir=self.output_dir,
            name_template=self.name,
            overwrite=self.overwrite,
            keep_going=self.keep_going,
            retries=self.retries,
            dynamic=self.dynamic,
            variants=self.variants,
            combinatorial=self.combinatorial,
            wildcards=self.wildcards,
            xy=list(self.xy or []),
            **more,
        )


def register(app: typer.Typer) -> None:
    def command(
        name: str, help: str, value_flags: Callable[[Command], Command]
    ) -> Callable[[Command], Any]:
        """A command with its value flags and the run options (flags=…, options=…)."""
        return lambda function: app.command(name, help=help, no_args_is_help=False)(
            value_flags(opts.with_options(RunOptions)(function))
        )

    @command("generate", HELP, opts.with_txt2img_flags)
    def generate(
        ctx: typer.Context,
        prompt: PromptWords = None,
        preset: opts.Preset = None,
        *,
        flags: dict[str, Any],  # the value flags (--steps, --cfg…): see options.with_value_flags
        options: RunOptions,
        rerun: Annotated[
            int | None,
            typer.Option("--rerun", metavar="ID", hidden=True, help="Start from generation ID."),
        ] = None,
        rerun_of: Annotated[
            int | None,
            typer.Option("--rerun-of", metavar="ID", hidden=True, help="Link to generation ID."),
        ] = None,
    ) -> None:
        recorded = None
        if rerun is not None:  # `sdcli rerun ID`: the recorded request is the bottom layer
            from sdcli.history.replay import load

            recorded = load(_history_path(ctx.obj), rerun)
            rerun_of = rerun
        request = options.request(prompt, preset, flags, recorded=recorded)
        _main(ctx.obj, request, options, rerun_of=rerun_of)

    @command("img2img", IMG2IMG_HELP, opts.with_value_flags)
    def img2img(
        ctx: typer.Context,
        prompt: PromptWords = None,
        init: Annotated[
            list[Path] | None,
            typer.Option(
                "--init",
                "-i",
                help="Init image: a file or a directory; repeatable.",
            ),
        ] = None,
        mask: Annotated[
            Path | None,
            typer.Option("--mask", help="Inpainting mask, the init image's size (white: repaint)."),
        ] = None,
        preset: opts.Preset = None,
        *,
        flags: dict[str, Any],
        options: RunOptions,
    ) -> None:
        request = options.request(
            prompt, preset, flags, mode="img2img", inputs=list(init or []), mask=mask,
        )  # fmt: skip
        _main(ctx.obj, request, options)


def _main(
    state: AppState, request: JobRequest, options: RunOptions, *, rerun_of: int | None = None
) -> None:
    """What generate and img2img share: plan the job, then a dry run or the run."""
    from dataclasses import replace

    from sdcli.plan import plan_job
    from sdcli.preset_schema import FLAG_LABELS

    words = list(request.words)
    request = replace(request, flag_labels=FLAG_LABELS)
    job = plan_job(request, state.settings, stdin=_stdin_bytes())
    quiet = options.quiet
    if job.mode == "img2img" and not quiet:
        _size_notes(job)
    # Prompts typed at a terminal: say how, and how to stop. They are never waited for just
    # to be listed as not done (see _gave_up).
    typed = request.prompts_file is None and words == ["-"] and sys.stdin.isatty()
    if typed and not quiet:
        render.note(TYPING_HINT)
    if options.dry_run:
        _dry_run(state, job)
        return
    many = words == ["-"] or request.prompts_file is not None
    show = not (quiet or options.no_progress) and render.stderr_is_tty()
    pictures = picture_mode(state, quiet=quiet)
    thumbnails = pictures if not options.no_show and state.settings.thumbnails else None
    live = state.settings.live_preview and not options.no_preview
    journal = None
    if options.resume and options.no_journal:
        raise UsageError("give --resume or --no-journal, not both")
    # A run that may make more than one request keeps a journal (sdcli.journal).
    if (many or job.batches > 1 or len(job.inputs) > 1) and not options.no_journal:
        from sdcli.cli import runs_cmd
        from sdcli.journal.record import source_of

        source = source_of(words, request.prompts_file)
        journal = runs_cmd.open_for_generate(state, job, source, resume=options.resume, quiet=quiet)
        if journal is None:
            return  # --resume: this command's run is done already
    _run(
        state,
        job,
        show,
        json_lines=options.json_lines,
        quiet=quiet,
        typed=typed,
        many=many,
        thumbnails=thumbnails,
        preview=show and pictures is not None and live,
        history=None if options.no_history else history_recorder(state, job, rerun_of),
        journal=journal,
    )


def _history_path(state: AppState) -> Path:
    path = state.settings.history_path
    assert path is not None  # load_settings always sets it
    return path


def history_recorder(state: AppState, job: Job, rerun_of: int | None) -> HistoryRecorder | None:
    """The history sink, unless the config or SDCLI_HISTORY=off turned recording off."""
    path = state.settings.history
    if path is None:
        return None
    from sdcli.history.recorder import HistoryRecorder

    return HistoryRecorder(
        path,
        mode=job.mode,
        presets=job.preset_names,
        command=["sdcli", *sys.argv[1:]],
        rerun_of=rerun_of,
    )


def picture_mode(state: AppState, *, quiet: bool) -> Mode | None:
    """How pictures are drawn on stderr; None when they are not (no terminal, -q, `none`)."""
    if quiet or not render.stderr_is_tty():
        return None
    from sdcli.cli.pictures import detect_mode
    from sdcli.config import terminal

    mode = detect_mode(terminal(), state.settings.images)
    return None if mode == "none" else mode


def _size_notes(job: Job) -> None:
    """img2img with no size given: each init image's own, rounded to a multiple of 8."""
    if "width" in job.values or "height" in job.values or "width" in job.sets:
        return
    from sdcli.inputs import read_image
    from sdcli.plan import round_to_8

    for path in job.inputs:
        image = read_image(path)
        w, h = round_to_8(image.width), round_to_8(image.height)
        rounded = "" if (w, h) == (image.width, image.height) else " (rounded to a multiple of 8)"
        render.note(f"{path.name}: size {w}x{h} from the init image{rounded}")


def _dry_run(state: AppState, job: Job) -> None:
    """Print each body as it would be sent: names resolved if the server answers (GETs only)."""
    from sdcli.plan import dry_run_bodies, first_prompt, resolve_for_dry_run

    if len(state.settings.servers) > 1:
        _dry_run_on_servers(state, job)
        return
    prompts = first_prompt(job)
    resolved, error, cells = resolve_for_dry_run(state.client, job)
    if error is not None:
        render.warn(f"{error.message}: names are shown as typed, not as the server would get them")
    else:
        assert resolved is not None
        for note in (*resolved.notes, *resolved.defaults_notes):
            render.note(note)
    for body in dry_run_bodies(job, prompts, resolved, cells):
        render.result_json(body)
    _upscale_note(job, resolved)


def _dry_run_on_servers(state: AppState, job: Job) -> None:
    """--dry-run over several servers: the names resolved on each (all at once, as a run does),
    then the bodies once if every server would get the same, else once for each group of
    servers that would, each group named on stderr first. It stops where a run stops: a name
    one server lacks exits 2 naming it (the first in order), as does any error but one that
    makes a run leave the server out (it cannot be reached, a 5xx): that one is left out here too.

    As in a run, the first prompt is read before any server is asked; when every server
    resolved the same names the bodies are printed as the prompts come (`generate -`), else
    every prompt is read first to group the servers by the bodies they would get."""
    import json

    from sdcli.plan import dry_run_bodies, first_prompt, resolve_for_dry_run
    from sdcli.run import server_label
    from sdcli.schedule import on_each, server_failed

    servers = state.servers()
    prompts = first_prompt(job)
    outcomes = on_each([client for _, client in servers], lambda c: resolve_for_dry_run(c, job))
    answered: list[tuple[str, Resolved, Cells]] = []
    unreachable = None
    for (server, _), outcome in zip(servers, outcomes, strict=True):
        label = server_label(server.name, server.url)
        if isinstance(outcome, SdcliError):
            outcome.message = f"on {label}: {outcome.message}"  # a name it lacks: exit 2
        if isinstance(outcome, BaseException):
            raise outcome
        resolved, error, cells = outcome
        if error is not None and not server_failed(error):  # a 401, a 4xx: a run stops there
            error.message = f"on {label}: {error.message}"
            raise error
        if error is not None or resolved is None:
            render.warn(f"{label} left out, as a run would leave it: {error}")
            unreachable = error
            continue
        answered.append((label, resolved, cells))
    if not answered:
        assert unreachable is not None
        render.warn("no server answered: names are shown as typed, not as a server would get them")
        for body in dry_run_bodies(job, prompts, None, {}):
            render.result_json(body)
        _upscale_note(job, None)
        return
    groups: dict[str, tuple[list[str], Resolved, Iterable[dict[str, Any]]]] = {}
    _, resolved, cells = answered[0]
    if all((r, c) == (resolved, cells) for _, r, c in answered):  # the same bodies: streamed
        groups[""] = (
            [label for label, _, _ in answered],
            resolved,
            dry_run_bodies(job, prompts, resolved, cells),
        )
    else:
        texts = list(prompts)
        for label, resolved, cells in answered:
            made = list(dry_run_bodies(job, texts, resolved, cells))
            key = json.dumps(made, sort_keys=True)
            groups.setdefault(key, ([], resolved, made))[0].append(label)
    for labels, resolved, bodies in groups.values():
        if len(groups) == 1 and unreachable is None:
            render.note(f"the same request for every server: {', '.join(labels)}")
        else:
            render.note(f"the request for {', '.join(labels)}:")
        for note in (*resolved.notes, *resolved.defaults_notes):
            render.note(note)
        for body in bodies:
            render.result_json(body)
        _upscale_note(job, resolved)


def _upscale_note(job: Job, resolved: Resolved | None) -> None:
    """--dry-run with --upscale: what the extras tab would get after each image."""
    if not job.values.get("upscale"):
        return
    import json

    from sdcli.upscale import chained_spec

    spec = chained_spec(job.values, resolved.upscaler if resolved else None)
    assert spec is not None
    extras = json.dumps({**spec.body(), "image": "<each image as generated>"})
    render.note(f"then each image is upscaled in its place by the extras tab: {extras}")


def _run(
    state: AppState,
    job: Job,
    show_progress: bool,
    *,
    json_lines: bool,
    quiet: bool,
    typed: bool = False,
    many: bool = False,
    thumbnails: Mode | None = None,
    preview: bool = False,
    history: HistoryRecorder | None = None,
    journal: RunJournal | None = None,
    all_read: bool = True,
) -> None:
    """Run the job with the sinks asked for; `journal`: record it there (`all_read`: the
    prompts run are all the run's, so the run is done once they are)."""
    import time

    from sdcli.cli.reporter import CliReporter, LiveReporter
    from sdcli.events import Sink, fanout
    from sdcli.heap import KeepHeap
    from sdcli.run import Runner, RunSummary, run_job

    servers = state.servers()
    reporter: CliReporter
    wanted = None  # over several servers, one preview is drawn: only its server is asked
    if len(servers) > 1 and show_progress:  # a row per server under the lines, and the run's
        from sdcli.cli.serverrows import ServersReporter

        rows = [(server.url, server.name) for server, _ in servers]
        reporter = ServersReporter(json_lines=json_lines, quiet=quiet, servers=rows)
        wanted = reporter.wants_preview
    elif show_progress:
        reporter = LiveReporter(json_lines=json_lines, quiet=quiet)
    else:  # each `saved` line names its server when there are several
        names = {server.url: server.name for server, _ in servers}
        reporter = CliReporter(json_lines=json_lines, quiet=quiet, names=names)
    sinks: list[Sink] = [KeepHeap(), reporter]
    shown: list[Sink] = [reporter]  # where a grid's path (and picture) goes
    if journal is not None:
        sinks.insert(1, journal)  # before the reporter: a path printed is a path recorded
    if thumbnails is not None:
        from sdcli.cli.thumbnails import Thumbnails

        shown.append(Thumbnails(thumbnails))
        sinks.append(shown[-1])  # after the reporter: the path comes first
    if history is not None:
        sinks.append(history)
    grids = None
    if job.axes:
        from sdcli.grid import GridMaker

        grids = GridMaker(job, fanout(*shown), overwrite=job.overwrite)
        sinks.append(grids)
    sink = fanout(*sinks)
    runners = [
        Runner(
            client,
            sink,
            progress=show_progress,
            preview=show_progress and preview,
            preview_wanted=wanted,
            cache=state.list_cache(url=server.url),
            name=server.name if len(servers) > 1 else None,
            weight=server.weight,
        )
        for server, client in servers
    ]
    summary = RunSummary()
    started = time.monotonic()
    ended: BaseException | None = None
    try:
        on = runners if len(runners) > 1 else runners[0]
        if journal is not None:
            run_job(job, on, summary=summary, plan=journal.units_for)
        else:
            run_job(job, on, summary=summary)
    except BaseException as exc:
        ended = exc
        raise
    finally:
        if grids is not None:
            grids.close()
        reporter.close()
        left = None  # how to finish a journaled run that stopped
        if journal is not None:
            from sdcli.cli.runs_cmd import finish

            complete = ended is None and summary.gave_up is None and all_read
            left = finish(journal, all_read=complete, ended=ended)
        problem = history.close(ended) if history is not None else None
        if problem:
            render.warn(problem)
        if many and not quiet and summary.prompts:
            render.note(_run_summary(summary, time.monotonic() - started, ended))
        if left and not quiet:
            render.note(left)
    if summary.gave_up is not None:
        _gave_up(summary, iter(job.prompts), typed=typed)
    if summary.failures:
        n = len(summary.failures)
        render.error(
            f"{n} prompt{'s' if n != 1 else ''} failed, {len(summary.saved)} image(s) saved"
        )
        raise typer.Exit(int(ExitCode.SERVER))


NOT_DONE_LISTED = 1000  # untried prompts read (and named) after --keep-going gives up


def _gave_up(summary: RunSummary, prompts: Iterator[str], *, typed: bool) -> None:
    """--keep-going met a server that went away: name every prompt not done, then exit 3."""
    from sdcli.run import MAX_CONNECTION_FAILURES

    not_done = [failure.prompt for failure in summary.failures]
    tried = len(not_done)
    more = typed  # at a terminal, the prompts not typed yet are nobody's business
    if not typed:
        try:
            not_done += itertools.islice(prompts, NOT_DONE_LISTED)
            more = next(prompts, None) is not None
        except SdcliError:  # a bad line further on: list what came before it
            more = True
    for prompt in not_done:
        short = prompt if len(prompt) <= 80 else prompt[:79] + "…"
        render.error(f"not done: {short!r}")
    n = len(not_done)
    parts = [f"{tried} failed"]
    if n > tried:
        parts.append(f"{n - tried} not tried")
    if more:
        parts.append("the rest not read")
    render.error(
        f"stopped: {MAX_CONNECTION_FAILURES} prompts in a row could not reach the server; "
        f"{n} prompt{'s' if n != 1 else ''} not done ({', '.join(parts)}), "
        f"{len(summary.saved)} image(s) saved"
    )
    raise typer.Exit(int(ExitCode.UNREACHABLE))


def _run_summary(summary: RunSummary, seconds: float, ended: BaseException | None) -> str:
    """The closing line of a run of many prompts, on stderr: how it ended, how much was made,
    how fast. Only a run that finished says `done`; the error line that follows says why not
    (a run an error stopped counts no `0 failed`: the error is the failure)."""
    prompts, images, failed = summary.prompts, len(summary.saved), len(summary.failures)
    how = _how_it_ended(summary, ended)
    parts = [
        f"{prompts} prompt{'s' if prompts != 1 else ''}",
        f"{images} image{'s' if images != 1 else ''}",
        *([f"{failed} failed"] if failed or how != "stopped" else []),
        f"{seconds:.1f} s",
    ]
    return f"{how}: " + " · ".join(parts)


def _how_it_ended(summary: RunSummary, ended: BaseException | None) -> str:
    """`done`, `interrupted` (Ctrl-C; `interrupted by SIGTERM`…) or `stopped` (an error)."""
    from sdcli.errors import Interrupted, interruption

    if isinstance(ended, (KeyboardInterrupt, Interrupted)):  # Ctrl-C, SIGTERM, SIGHUP
        return f"interrupted{interruption(ended)[1]}"
    if ended is not None or summary.gave_up is not None:
        return "stopped"
    return "done"
