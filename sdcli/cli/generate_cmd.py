"""`sdcli generate`: turn prompts into saved images; paths (or JSON lines) on stdout."""

from __future__ import annotations

import io
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from sdcli.cli import options as opts
from sdcli.cli import render
from sdcli.cli.completion import complete_preset
from sdcli.cli.state import AppState
from sdcli.errors import ExitCode, SdcliError, UsageError

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


TYPING_HINT = "type one prompt per line; Ctrl-D on an empty line to finish"


def _stdin_bytes() -> BinaryIO:
    """stdin as bytes: prompts are decoded (and checked) by sdcli.prompts, not by the locale."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    return io.BytesIO(sys.stdin.read().encode("utf-8", "surrogateescape"))  # a text-only stand-in


def _nonempty(prompts: Iterator[str], prompts_file: Path | None) -> Iterator[str]:
    """The prompts, once there is surely one: an empty stdin is a mistake, not a no-op."""
    first = next(prompts, None)
    if first is None:
        where = f"in --prompts-file {prompts_file}" if prompts_file is not None else "on stdin"
        raise UsageError(
            f"no prompt {where}",
            hint="one prompt per line; blank lines and # comments are skipped",
        )
    return itertools.chain([first], prompts)


def _retry_backoff() -> float:
    """The first wait between retries: 1 s, or SDCLI_RETRY_BACKOFF (tests set 0)."""
    raw = os.environ.get("SDCLI_RETRY_BACKOFF", "").strip()
    if not raw:
        return 1.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"SDCLI_RETRY_BACKOFF must be a number of seconds, not {raw!r}")
    return seconds


def register(app: typer.Typer) -> None:
    @app.command("generate", help=HELP, no_args_is_help=False)
    def generate(
        ctx: typer.Context,
        prompt: Annotated[
            list[str] | None,
            typer.Argument(help='Prompt words (joined with spaces), or "-" to read stdin.'),
        ] = None,
        preset: Annotated[
            list[str] | None,
            typer.Option(
                "--preset",
                "-p",
                help="Preset name or .toml path; repeatable.",
                autocompletion=complete_preset,
            ),
        ] = None,
        negative: opts.Negative = None,
        steps: opts.Steps = None,
        cfg: opts.Cfg = None,
        sampler: opts.SamplerOpt = None,
        scheduler: opts.SchedulerOpt = None,
        clip_skip: opts.ClipSkip = None,
        width: opts.Width = None,
        height: opts.Height = None,
        size: opts.Size = None,
        seed: opts.Seed = None,
        batch_size: opts.BatchSize = None,
        count: opts.Count = None,
        model: opts.Model = None,
        from_image: opts.FromImage = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Any request field: KEY=VALUE (VALUE as JSON, else text)."),
        ] = None,
        output_dir: Annotated[
            Path | None,
            typer.Option(
                "--output-dir",
                "-o",
                help="Where to save (env SDCLI_OUTPUT_DIR) \\[default: .].",
                readable=False,  # saving needs write and search permission, never read (mode 733)
            ),
        ] = None,
        name: Annotated[
            str | None,
            typer.Option(
                "--name",
                help="File name template: {date} {time} {seed} {index} {batch} {preset} "
                "{prompt_slug} {model} {sampler} {steps} {width} {height} "
                "\\[default: {date}-{time}-{index}-{seed}].",
            ),
        ] = None,
        prompts_file: Annotated[
            Path | None,
            typer.Option(
                "--prompts-file", help="Read prompts from FILE, one per line (UTF-8, 1 MiB max)."
            ),
        ] = None,
        json_lines: Annotated[
            bool, typer.Option("--json", help="One JSON object per saved image on stdout.")
        ] = False,
        quiet: Annotated[
            bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr.")
        ] = False,
        no_progress: Annotated[
            bool, typer.Option("--no-progress", help="No progress bar.")
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Print the request body as JSON, names resolved with the server's lists "
                "(read only; as typed if it cannot be reached); generate nothing.",
            ),
        ] = False,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace existing files of the same name.")
        ] = False,
        keep_going: Annotated[
            bool,
            typer.Option(
                "--keep-going",
                help="With many prompts: go on after a failed one (but stop, exit 3, after 3 "
                "in a row cannot reach the server).",
            ),
        ] = False,
        retries: Annotated[
            int,
            typer.Option(
                min=0,
                help="Retry connection errors and 502/503/504 this many times, list calls "
                "included (never a 4xx or a timeout), waiting 1 s, 2 s, 4 s… between tries "
                "(env SDCLI_RETRY_BACKOFF: the first wait in seconds).",
            ),
        ] = 0,
    ) -> None:
        state: AppState = ctx.obj
        words = list(prompt or [])
        image_values: dict[str, Any] = {}
        if from_image is not None:
            from sdcli.imageparams import settings_from_image

            from_png = settings_from_image(from_image)
            image_values = from_png.values
            if not words and prompts_file is None:
                words = [from_png.prompt]
        if not words and prompts_file is None:
            raise UsageError('give a prompt, "-" to read prompts from stdin, or --prompts-file')
        if words and prompts_file is not None:
            raise UsageError("give prompt words or --prompts-file, not both")
        from sdcli.generate import GenerateJob, check_job
        from sdcli.output import DEFAULT_NAME_TEMPLATE, check_name_template
        from sdcli.payload import merge_values, parse_set
        from sdcli.presets import load_preset, validate_values

        given = opts.value_flags(
            negative=negative,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            scheduler=scheduler,
            clip_skip=clip_skip,
            width=width,
            height=height,
            size=size,
            seed=seed,
            batch_size=batch_size,
            count=count,
            model=model,
        )
        given = validate_values(given, where="command line", labels=opts.FLAG_LABELS)
        sets = parse_set(set_ or [])
        names = list(preset or [])
        if not names and state.settings.default_preset:
            names = [state.settings.default_preset]
        presets = [load_preset(n) for n in names]
        values = merge_values([image_values, *(p.values for p in presets), given])
        template = name or DEFAULT_NAME_TEMPLATE
        check_name_template(template)
        job = GenerateJob(
            values=values,
            sets=sets,
            preset_names=[p.name for p in presets],
            output_dir=state.output_dir(output_dir),
            name_template=template,
            overwrite=overwrite,
            batches=int(values.get("batch_count") or 1),
            keep_going=keep_going,
            retries=retries,
            retry_backoff=_retry_backoff(),
            show_progress=not (quiet or no_progress) and render.stderr_is_tty(),
        )
        check_job(job)
        from sdcli.prompts import read_prompts

        # Prompts typed at a terminal: say how, and how to stop. They are never waited for just
        # to be listed as not done (see _gave_up).
        typed = prompts_file is None and words == ["-"] and sys.stdin.isatty()
        if typed and not quiet:
            render.note(TYPING_HINT)
        prompts = _nonempty(read_prompts(words, prompts_file, _stdin_bytes()), prompts_file)
        if dry_run:
            _dry_run(state, job, prompts)
            return
        many = words == ["-"] or prompts_file is not None
        _run(state, job, prompts, json_lines=json_lines, quiet=quiet, typed=typed, many=many)


def _dry_run(state: AppState, job: Any, prompts: Iterator[str]) -> None:
    """Print each body as it would be sent: names resolved if the server answers (GETs only)."""
    from sdcli.generate import dry_run_payload, resolve_for_dry_run

    resolved, error = resolve_for_dry_run(state.client, job)
    if error is not None:
        render.warn(f"{error.message}: names are shown as typed, not as the server would get them")
    else:
        assert resolved is not None
        for note in (*resolved.notes, *resolved.defaults_notes):
            render.note(note)
    for text in prompts:
        render.result_json(dry_run_payload(job, text, resolved))


def _run(
    state: AppState,
    job: Any,
    prompts: Iterator[str],
    *,
    json_lines: bool,
    quiet: bool,
    typed: bool = False,
    many: bool = False,
) -> None:
    import time

    from sdcli.cli.reporter import CliReporter, LiveReporter
    from sdcli.generate import Generator, RunSummary

    reporter_cls = LiveReporter if job.show_progress else CliReporter
    reporter = reporter_cls(json_lines=json_lines, quiet=quiet)
    summary = RunSummary()
    started = time.monotonic()
    try:
        Generator(state.client, reporter).run(job, prompts, summary)
    finally:
        reporter.close()
        if many and not quiet and summary.prompts:
            render.note(_run_summary(summary, time.monotonic() - started))
    if summary.gave_up is not None:
        _gave_up(summary, prompts, typed=typed)
    if summary.failures:
        n = len(summary.failures)
        render.error(
            f"{n} prompt{'s' if n != 1 else ''} failed, {len(summary.saved)} image(s) saved"
        )
        raise typer.Exit(int(ExitCode.SERVER))


NOT_DONE_LISTED = 1000  # untried prompts read (and named) after --keep-going gives up


def _gave_up(summary: Any, prompts: Iterator[str], *, typed: bool) -> None:
    """--keep-going met a server that went away: name every prompt not done, then exit 3."""
    from sdcli.generate import MAX_CONNECTION_FAILURES

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


def _run_summary(summary: Any, seconds: float) -> str:
    """The closing line of a run of many prompts, on stderr: how much was done, how fast."""
    prompts, images, failed = summary.prompts, len(summary.saved), len(summary.failures)
    return (
        f"done: {prompts} prompt{'s' if prompts != 1 else ''} · "
        f"{images} image{'s' if images != 1 else ''} · {failed} failed · {seconds:.1f} s"
    )
