"""`sdcli set-model`, `models`, `samplers`: what the server can run, and switching checkpoints."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdcli.cli import render
from sdcli.cli.completion import complete_model
from sdcli.cli.state import AppState

if TYPE_CHECKING:
    from sdcli.apitypes import Sampler, Scheduler
    from sdcli.client import WebUIClient
    from sdcli.listcache import ListCache

SET_MODEL_HELP = """\
Switch the server's checkpoint and print the loaded title on stdout.

NAME may be the title, the model name, the file name with or without extension, the short
hash or the sha256; then the same ignoring case, then ignoring separators too ("sdxl" is
"sd_xl"); then a unique prefix or part of a name, of at least 3 letters or digits.
Several matches, none, or too short: exit 2 with the candidates, never a guess. The server
loads the model before answering (up to --timeout); a load that fails there exits 1. Forge
only selects it: it loads at the next generation. A load cannot be stopped: after --timeout
or Ctrl-C it goes on on the server.
[bold]This changes the model for every user of the server.[/]

[bold]Examples[/]

  sdcli set-model counterfeit
  sdcli set-model --refresh "anime/counterfeitV30_v30.safetensors"   [dim]# after adding a file[/]
  sdcli set-model cbfba64e66 && sdcli generate -p chibi "a cat"
"""

MODELS_HELP = """\
List the server's checkpoints: name, title and short hash; the loaded one is marked *
(on Forge: the selected one, which loads at the next generation).

At a terminal: a table. Piped: one tab-separated line per checkpoint
(current, name, title, hash; current is "*" or empty, hash empty until the server computed it).
--json: one JSON object per line (name, title, hash, sha256, filename, config, current).

[bold]Examples[/]

  sdcli models
  sdcli models | cut -f2                  [dim]# model names only[/]
  sdcli models --json | jq -r 'select(.current) | .title'
  sdcli models --refresh                  [dim]# after adding a file to the server[/]
"""

SAMPLERS_HELP = """\
List the server's samplers (name, aliases, default schedule) and schedulers (label, name).

At a terminal: two tables. Piped: one tab-separated line per item, the first field saying
which: "sampler NAME ALIASES DEFAULT-SCHEDULE" or "scheduler LABEL NAME ALIASES".
--json: one JSON object per line, "kind" saying which: {"kind": "sampler", "name", "aliases",
"default_scheduler", "options"} or {"kind": "scheduler", "label", "name", "aliases"}. Servers
without /schedulers have no scheduler lines: before web UI 1.9.1 schedules are part of sampler
names, and SD.Next's settings pick the schedule.

[bold]Examples[/]

  sdcli samplers
  sdcli samplers | awk -F'\\t' '$1 == "sampler" {print $2}'
  sdcli samplers --json | jq -r 'select(.kind == "scheduler") | .label'
"""


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A rich spinner on stderr while something slow happens; nothing when stderr is piped."""
    if not render.stderr_is_tty():
        yield
        return
    from rich.markup import escape

    # titles end in "[hash]", not markup; and a server's names are never terminal commands
    with render.err_console().status(escape(render.printable(text))):
        yield


RefreshModels = Annotated[
    bool, typer.Option("--refresh", help="Re-scan the server's model folder first.")
]


def register(app: typer.Typer) -> None:
    @app.command("set-model", help=SET_MODEL_HELP)
    def set_model(
        ctx: typer.Context,
        name: Annotated[
            str,
            typer.Argument(
                help="Checkpoint to load (short names resolve).",
                metavar="NAME",
                autocompletion=complete_model,
            ),
        ],
        refresh: RefreshModels = False,
    ) -> None:
        state: AppState = ctx.obj
        cache = state.list_cache(fresh=True)  # the server's list, renewed in the cache
        render.result(switch_checkpoint(state.client, name, refresh=refresh, cache=cache))

    @app.command(
        "models",
        help=MODELS_HELP,
        short_help="List the server's checkpoints; the loaded one is marked *.",
    )
    def models(
        ctx: typer.Context,
        json_lines: Annotated[
            bool, typer.Option("--json", help="One JSON object per checkpoint on stdout.")
        ] = False,
        refresh: RefreshModels = False,
    ) -> None:
        from sdcli.catalog import is_forge_options, is_sdnext
        from sdcli.names.lookup import checkpoint_option, loaded_model
        from sdcli.serverinfo import FORGE_SELECTED, current_checkpoint

        state: AppState = ctx.obj
        client = state.client
        if refresh:
            with spinner("re-scanning checkpoints…"):
                client.refresh_checkpoints()
        found = client.sd_models()
        state.list_cache(fresh=True).put("models", found)
        options = client.get_options()
        selected = checkpoint_option(options)
        if is_sdnext(client):  # it keeps a name that failed to load: /checkpoint says what is
            selected = current_checkpoint(client)
        current = loaded_model(selected, found)
        if is_forge_options(options) and current is not None:
            render.note(f"* {current.title}: {FORGE_SELECTED} (Forge)")
        if json_lines:
            for m in found:
                render.result_json(
                    {
                        "name": m.model_name,
                        "title": m.title,
                        "hash": m.hash,
                        "sha256": m.sha256,
                        "filename": m.filename,
                        "config": m.config,
                        "current": m is current,
                    }
                )
            return
        if not found:
            render.note("the server lists no checkpoints (put one in models/Stable-diffusion)")
            return
        rows = [["*" if m is current else "", m.model_name, m.title, m.hash or ""] for m in found]
        render.table(None, ["", "name", "title", "hash"], rows)

    @app.command(
        "samplers", help=SAMPLERS_HELP, short_help="List the server's samplers and schedulers."
    )
    def samplers(
        ctx: typer.Context,
        json_lines: Annotated[
            bool,
            typer.Option("--json", help="One JSON object per sampler and scheduler on stdout."),
        ] = False,
    ) -> None:
        from sdcli.catalog import is_sdnext

        state: AppState = ctx.obj
        client = state.client
        found = client.samplers()
        # SD.Next has no per-request schedule, and its /schedulers fails its own response model
        sdnext = is_sdnext(client)
        schedulers = None if sdnext else client.schedulers()
        if json_lines:
            for item in _samplers_json(found, schedulers):
                render.result_json(item)
        else:
            _show_samplers(found, schedulers)
        if sdnext:
            render.note(
                "SD.Next has no per-request schedule type: its setting schedulers_sigma picks "
                "it for every job (default, karras, betas, exponential, lambdas, flowmatch)"
            )
        elif schedulers is None:
            render.note(
                "this server has no /schedulers (web UI before 1.9.1): the schedule is part "
                'of the sampler name, e.g. "DPM++ 2M Karras"'
            )


def switch_checkpoint(
    client: WebUIClient, name: str, *, refresh: bool = False, cache: ListCache | None = None
) -> str:
    """`set-model` (and interactive mode's `/model`): resolve, switch with a spinner, verify;
    the loaded title. Never from the list cache: the server's list, kept in `cache` if given."""
    from sdcli.catalog import is_forge_options, is_sdnext
    from sdcli.errors import Interrupted, ServerTimeout
    from sdcli.names.lookup import (
        checkpoint_option,
        is_same_model,
        loaded_title,
        resolve_model,
    )
    from sdcli.serverinfo import FORGE_SELECTED, current_checkpoint, switch_model

    if refresh:
        with spinner("re-scanning checkpoints…"):
            client.refresh_checkpoints()
    found = client.sd_models()
    if cache is not None:
        cache.put("models", found)
    model = resolve_model(name, found)
    options = client.get_options()
    before = checkpoint_option(options)
    if is_sdnext(client):  # it keeps a name that failed to load: /checkpoint says what is
        before = current_checkpoint(client)
    lazy = is_forge_options(options)  # Forge only records the choice
    if is_same_model(before, model):
        render.note(f"{model.title} is already {'selected' if lazy else 'loaded'}")
        return loaded_title(before, model)
    if model.title != name:
        render.note(f"{name} -> {model.title}")
    still = (
        f"the server is still loading {model.title} (a load cannot be stopped; "
        "`sdcli models` shows the model once it is loaded)"
    )
    try:
        with spinner(f"{'selecting' if lazy else 'loading'} {model.title}…"):
            title = switch_model(client, model)
    except ServerTimeout as exc:
        exc.message = f"{exc.message}; {still}"
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {still}") from None
    if lazy:
        render.note(f"{title}: {FORGE_SELECTED} (Forge)")
    return title


def _default_schedule(sampler: Sampler, schedulers: Sequence[Scheduler] | None) -> str:
    value = sampler.options.get("scheduler")
    if not value:
        return ""
    from sdcli.names.lookup import same_name

    for s in schedulers or ():
        if same_name(str(value), s.name) or same_name(str(value), s.label):
            return s.label
    return str(value)


def _samplers_json(
    found: Sequence[Sampler], schedulers: Sequence[Scheduler] | None
) -> list[dict[str, Any]]:
    """The `--json` lines: samplers, then schedulers, each saying which it is in "kind"."""
    lines: list[dict[str, Any]] = [
        {
            "kind": "sampler",
            "name": s.name,
            "aliases": list(s.aliases),
            "default_scheduler": _default_schedule(s, schedulers) or None,
            "options": s.options,
        }
        for s in found
    ]
    lines += [
        {"kind": "scheduler", "label": s.label, "name": s.name, "aliases": list(s.aliases)}
        for s in schedulers or ()
    ]
    return lines


def _show_samplers(found: Sequence[Sampler], schedulers: Sequence[Scheduler] | None) -> None:
    sampler_rows = [[s.name, ", ".join(s.aliases), _default_schedule(s, schedulers)] for s in found]
    scheduler_rows = [[s.label, s.name, ", ".join(s.aliases)] for s in schedulers or ()]
    if render.wants_table():
        render.table("Samplers", ["name", "aliases", "default schedule"], sampler_rows)
        if scheduler_rows:
            render.table("Schedulers", ["label", "name", "aliases"], scheduler_rows)
        return
    # Piped, the two lists share one stream: the first field says which list a line is from.
    rows = [["sampler", *r] for r in sampler_rows] + [["scheduler", *r] for r in scheduler_rows]
    render.table(None, ["kind", "name", "", ""], rows)
