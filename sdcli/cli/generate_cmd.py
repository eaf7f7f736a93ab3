"""`sdcli generate`: turn prompts into saved images; paths (or JSON lines) on stdout."""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from sdcli.cli import options as opts
from sdcli.cli import render
from sdcli.cli.completion import complete_preset
from sdcli.cli.state import AppState
from sdcli.errors import ExitCode, SdcliError

if TYPE_CHECKING:
    from sdcli.cli.pictures import Mode
    from sdcli.history.recorder import HistoryRecorder
    from sdcli.job import Job
    from sdcli.plan import JobRequest
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


TYPING_HINT = "type one prompt per line; Ctrl-D on an empty line to finish"


def _stdin_bytes() -> BinaryIO:
    """stdin as bytes: prompts are decoded (and checked) by sdcli.prompts, not by the locale."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    return io.BytesIO(sys.stdin.read().encode("utf-8", "surrogateescape"))  # a text-only stand-in


Preset = Annotated[
    list[str] | None,
    typer.Option(
        "--preset",
        "-p",
        help="Preset name or .toml path; repeatable.",
        autocompletion=complete_preset,
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any request field: KEY=VALUE (VALUE as JSON, else text)."),
]
OutputDir = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        help="Where to save (env SDCLI_OUTPUT_DIR) \\[default: .].",
        readable=False,  # saving needs write and search permission, never read (mode 733)
    ),
]
PromptsFile = Annotated[
    Path | None,
    typer.Option("--prompts-file", help="Read prompts from FILE, one per line (UTF-8, 1 MiB max)."),
]
JsonLines = Annotated[
    bool, typer.Option("--json", help="One JSON object per saved image on stdout.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar.")]
NoShow = Annotated[
    bool, typer.Option("--no-show", help="No thumbnail under each saved path (on a terminal).")
]
NoPreview = Annotated[
    bool, typer.Option("--no-preview", help="No live preview above the progress bar.")
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the request body as JSON, names resolved with the server's lists "
        "(read only; as typed if it cannot be reached); generate nothing.",
    ),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing files of the same name.")
]
KeepGoing = Annotated[
    bool,
    typer.Option(
        "--keep-going",
        help="With many prompts: go on after a failed one (but stop, exit 3, after 3 "
        "in a row cannot reach the server).",
    ),
]
Retries = Annotated[
    int,
    typer.Option(
        min=0,
        help="Retry connection errors and 502/503/504 this many times, list calls "
        "included (never a 4xx or a timeout), waiting 1 s, 2 s, 4 s… between tries "
        "(env SDCLI_RETRY_BACKOFF: the first wait in seconds).",
    ),
]
NoHistory = Annotated[
    bool,
    typer.Option(
        "--no-history", help="Do not record this run in the history (config: history = false)."
    ),
]
NAME_FIELDS_HELP = (
    "File name template: {date} {time} {seed} {index} {batch} {preset} "
    "{prompt_slug} {model} {sampler} {steps} {width} {height}"
)


def register(app: typer.Typer) -> None:
    @app.command("generate", help=HELP, no_args_is_help=False)
    @opts.with_txt2img_flags
    def generate(
        ctx: typer.Context,
        prompt: Annotated[
            list[str] | None,
            typer.Argument(help='Prompt words (joined with spaces), or "-" to read stdin.'),
        ] = None,
        preset: Preset = None,
        *,
        flags: dict[str, Any],  # the value flags (--steps, --cfg…): see options.with_value_flags
        from_image: opts.FromImage = None,
        set_: Sets = None,
        output_dir: OutputDir = None,
        name: Annotated[
            str | None,
            typer.Option(
                "--name", help=NAME_FIELDS_HELP + " \\[default: {date}-{time}-{index}-{seed}]."
            ),
        ] = None,
        prompts_file: PromptsFile = None,
        json_lines: JsonLines = False,
        quiet: Quiet = False,
        no_progress: NoProgress = False,
        no_show: NoShow = False,
        no_preview: NoPreview = False,
        dry_run: DryRun = False,
        overwrite: Overwrite = False,
        keep_going: KeepGoing = False,
        retries: Retries = 0,
        no_history: NoHistory = False,
        rerun: Annotated[
            int | None,
            typer.Option("--rerun", metavar="ID", hidden=True, help="Start from generation ID."),
        ] = None,
        rerun_of: Annotated[
            int | None,
            typer.Option("--rerun-of", metavar="ID", hidden=True, help="Link to generation ID."),
        ] = None,
    ) -> None:
        from sdcli.plan import JobRequest

        recorded = None
        if rerun is not None:  # `sdcli rerun ID`: the recorded request is the bottom layer
            from sdcli.history.replay import load

            recorded = load(_history_path(ctx.obj), rerun)
            rerun_of = rerun
        request = JobRequest(
            words=list(prompt or []),
            prompts_file=prompts_file,
            presets=list(preset or []),
            flags=flags,
            sets=list(set_ or []),
            from_image=from_image,
            recorded=recorded,
            output_dir=output_dir,
            name_template=name,
            overwrite=overwrite,
            keep_going=keep_going,
            retries=retries,
        )
        _main(ctx.obj, request, json_lines=json_lines, quiet=quiet, no_progress=no_progress,
              dry_run=dry_run, no_show=no_show, no_preview=no_preview,
              history=not no_history, rerun_of=rerun_of)  # fmt: skip

    @app.command("img2img", help=IMG2IMG_HELP, no_args_is_help=False)
    @opts.with_value_flags
    def img2img(
        ctx: typer.Context,
        prompt: Annotated[
            list[str] | None,
            typer.Argument(help='Prompt words (joined with spaces), or "-" to read stdin.'),
        ] = None,
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
        preset: Preset = None,
        *,
        flags: dict[str, Any],
        from_image: opts.FromImage = None,
        set_: Sets = None,
        output_dir: OutputDir = None,
        name: Annotated[
            str | None,
            typer.Option(
                "--name",
                help=NAME_FIELDS_HELP + " {init} \\[default: {date}-{time}-{index}-{init}-{seed}].",
            ),
        ] = None,
        prompts_file: PromptsFile = None,
        json_lines: JsonLines = False,
        quiet: Quiet = False,
        no_progress: NoProgress = False,
        no_show: NoShow = False,
        no_preview: NoPreview = False,
        dry_run: DryRun = False,
        overwrite: Overwrite = False,
        keep_going: KeepGoing = False,
        retries: Retries = 0,
        no_history: NoHistory = False,
    ) -> None:
        from sdcli.plan import JobRequest

        request = JobRequest(
            words=list(prompt or []),
            prompts_file=prompts_file,
            presets=list(preset or []),
            flags=flags,
            sets=list(set_ or []),
            from_image=from_image,
            mode="img2img",
            output_dir=output_dir,
            name_template=name,
            overwrite=overwrite,
            keep_going=keep_going,
            retries=retries,
            inputs=list(init or []),
            mask=mask,
        )
        _main(ctx.obj, request, json_lines=json_lines, quiet=quiet, no_progress=no_progress,
              dry_run=dry_run, no_show=no_show, no_preview=no_preview,
              history=not no_history)  # fmt: skip


def _main(
    state: AppState,
    request: JobRequest,
    *,
    json_lines: bool,
    quiet: bool,
    no_progress: bool,
    dry_run: bool,
    no_show: bool = False,
    no_preview: bool = False,
    history: bool = True,
    rerun_of: int | None = None,
) -> None:
    """What generate and img2img share: plan the job, then a dry run or the run."""
    from dataclasses import replace

    from sdcli.plan import plan_job
    from sdcli.preset_schema import FLAG_LABELS

    words = list(request.words)
    request = replace(request, flag_labels=FLAG_LABELS)
    job = plan_job(request, state.settings, stdin=_stdin_bytes())
    if job.mode == "img2img" and not quiet:
        _size_notes(job)
    # Prompts typed at a terminal: say how, and how to stop. They are never waited for just
    # to be listed as not done (see _gave_up).
    typed = request.prompts_file is None and words == ["-"] and sys.stdin.isatty()
    if typed and not quiet:
        render.note(TYPING_HINT)
    if dry_run:
        _dry_run(state, job)
        return
    many = words == ["-"] or request.prompts_file is not None
    show = not (quiet or no_progress) and render.stderr_is_tty()
    pictures = picture_mode(state, quiet=quiet)
    thumbnails = pictures if not no_show and state.settings.thumbnails else None
    preview = show and pictures is not None and not no_preview and state.settings.live_preview
    _run(
        state,
        job,
        show,
        json_lines=json_lines,
        quiet=quiet,
        typed=typed,
        many=many,
        thumbnails=thumbnails,
        preview=preview,
        history=history_recorder(state, job, rerun_of) if history else None,
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

    prompts = first_prompt(job)
    resolved, error = resolve_for_dry_run(state.client, job)
    if error is not None:
        render.warn(f"{error.message}: names are shown as typed, not as the server would get them")
    else:
        assert resolved is not None
        for note in (*resolved.notes, *resolved.defaults_notes):
            render.note(note)
    for body in dry_run_bodies(job, prompts, resolved):
        render.result_json(body)


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
) -> None:
    import time

    from sdcli.cli.reporter import CliReporter, LiveReporter
    from sdcli.events import Sink, fanout
    from sdcli.heap import KeepHeap
    from sdcli.run import Runner, RunSummary, run_job

    reporter_cls = LiveReporter if show_progress else CliReporter
    reporter = reporter_cls(json_lines=json_lines, quiet=quiet)
    sinks: list[Sink] = [KeepHeap(), reporter]
    if thumbnails is not None:
        from sdcli.cli.thumbnails import Thumbnails

        sinks.append(Thumbnails(thumbnails))  # after the reporter: the path comes first
    if history is not None:
        sinks.append(history)
    runner = Runner(
        state.client,
        fanout(*sinks),
        progress=show_progress,
        preview=show_progress and preview,
        cache=state.list_cache(),
    )
    summary = RunSummary()
    started = time.monotonic()
    ended: BaseException | None = None
    try:
        run_job(job, runner, summary=summary)
    except BaseException as exc:
        ended = exc
        raise
    finally:
        reporter.close()
        problem = history.close(ended) if history is not None else None
        if problem:
            render.warn(problem)
        if many and not quiet and summary.prompts:
            render.note(_run_summary(summary, time.monotonic() - started))
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


def _run_summary(summary: RunSummary, seconds: float) -> str:
    """The closing line of a run of many prompts, on stderr: how much was done, how fast."""
    prompts, images, failed = summary.prompts, len(summary.saved), len(summary.failures)
    return (
        f"done: {prompts} prompt{'s' if prompts != 1 else ''} · "
        f"{images} image{'s' if images != 1 else ''} · {failed} failed · {seconds:.1f} s"
    )
