"""`sdcli loras|embeddings|styles|vaes|upscalers` and `sdcli refresh`: the server's other lists.

Same conventions as `sdcli models`: a table at a terminal, tab-separated lines in a pipe, one
JSON object per line with --json.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from sdcli.cli import render
from sdcli.cli.state import AppState
from sdcli.datatypes import frozen

if TYPE_CHECKING:
    from sdcli.client import RefreshKind, WebUIClient

JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON object per item on stdout.")]
RefreshFlag = Annotated[
    bool, typer.Option("--refresh", help="Re-scan the server's folder first (new files).")
]

REFRESH_KINDS = ("checkpoints", "loras", "embeddings", "vae")
_REFRESH_ALIASES = {
    "checkpoint": "checkpoints",
    "lora": "loras",
    "embedding": "embeddings",
    "vaes": "vae",
}
REFRESH_HELP = """\
Make the server re-scan its model folders, so files added since it started can be used.

KIND is one or more of checkpoints, loras, embeddings, vae (default: all four). Prints one
line per folder re-scanned on stderr; nothing on stdout.

[bold]Examples[/]

  sdcli refresh                       [dim]# everything[/]
  sdcli refresh loras && sdcli loras
"""


def _list_help(what: str, columns: str, json_keys: str, example: str) -> str:
    return f"""\
List the server's {what}.

At a terminal: a table. Piped: one tab-separated line each ({columns}).
--json: one JSON object per line ({json_keys}). --refresh re-scans the folder first.

[bold]Examples[/]

{example}
"""


def _show(
    rows: Sequence[Sequence[str]],
    columns: Sequence[str],
    items: Sequence[dict[str, Any]],
    json_lines: bool,
    empty: str,
) -> None:
    if json_lines:
        for item in items:
            render.result_json(item)
        return
    if not rows:
        render.note(empty)
        return
    render.table(None, columns, rows)


def _refresh(client: WebUIClient, kind: str) -> None:
    from sdcli.cli.models_cmd import spinner

    with spinner(f"re-scanning {kind}…"):
        client.refresh(cast("RefreshKind", kind))


@frozen
class Listing:
    """One list command: what it asks the server, and how one entry reads as a row (the table's
    or a tab-separated line) and as a JSON object."""

    name: str
    help: tuple[str, str, str, str]  # what, columns, JSON keys, examples (see _list_help)
    ask: Callable[[WebUIClient], Sequence[Any] | None]  # None: the server has no such route
    headers: tuple[str, ...]
    row: Callable[[Any], list[str]]
    item: Callable[[Any], dict[str, Any]]
    empty: str  # said when the list is empty
    short: str  # the one line in `sdcli --help`
    refresh: str | None = None  # the kind `--refresh` re-scans; None: no --refresh
    missing: Callable[[], str] = str  # the error when `ask` finds no route

    def show(self, ctx: typer.Context, json_lines: bool, refresh: bool = False) -> None:
        client = _client(ctx)
        if refresh and self.refresh is not None:
            _refresh(client, self.refresh)
        found = self.ask(client)
        if found is None:
            from sdcli.errors import ApiError

            raise ApiError(self.missing())
        rows = [self.row(x) for x in found]
        _show(rows, self.headers, [self.item(x) for x in found], json_lines, self.empty)


def _no_route(constant: str, why: str) -> str:
    """`this server has no /sdapi/v1/loras (…)`: the path from the client, imported only now."""
    from sdcli import client

    return f"this server has no {getattr(client, constant)} ({why})"


LISTINGS = (
    Listing(
        "loras",
        (
            "LoRAs: the name `<lora:NAME:0.8>` takes in a prompt, and the file",
            "name, alias, path",
            "name, alias, path",
            "  sdcli loras\n  sdcli loras | cut -f1",
        ),
        lambda client: client.loras(),
        ("name", "alias", "path"),
        lambda x: [x.name, x.alias if x.alias != x.name else "", x.path],
        lambda x: {"name": x.name, "alias": x.alias, "path": x.path},
        "the server lists no LoRAs (put them in models/Lora, then `sdcli refresh loras`)",
        "List the server's LoRAs.",
        refresh="loras",
        missing=lambda: _no_route("LORAS_PATH", "its Lora extension is off"),
    ),
    Listing(
        "embeddings",
        (
            "textual-inversion embeddings (a prompt uses them by name); those skipped for the "
            "loaded model's architecture are marked",
            "name, loaded or skipped, vectors",
            "name, loaded, vectors, shape, step, checkpoint",
            "  sdcli embeddings\n  sdcli embeddings --json | jq -r 'select(.loaded) | .name'",
        ),
        lambda client: client.embeddings(),
        ("name", "state", "vectors"),
        lambda e: [e.name, "loaded" if e.loaded else "skipped", _num(e.vectors)],
        lambda e: {
            "name": e.name,
            "loaded": e.loaded,
            "vectors": e.vectors,
            "shape": e.shape,
            "step": e.step,
            "checkpoint": e.checkpoint,
        },
        "the server lists no embeddings (put them in embeddings/, then `sdcli refresh embeddings`)",
        "List the server's embeddings.",
        refresh="embeddings",
    ),
    Listing(
        "styles",
        (
            "prompt styles (`--style NAME` in the web UI's sense)",
            "name, prompt, negative prompt",
            "name, prompt, negative_prompt",
            "  sdcli styles\n  sdcli styles --json | jq -r .name",
        ),
        lambda client: client.prompt_styles(),
        ("name", "prompt", "negative prompt"),
        lambda s: [s.name, s.prompt, s.negative_prompt],
        lambda s: {"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt},
        "the server lists no prompt styles (the web UI keeps them in styles.csv)",
        "List the server's prompt styles.",
    ),
    Listing(
        "vaes",
        ("VAE files (besides Automatic and None)", "name, file", "name, filename", "  sdcli vaes"),
        lambda client: client.sd_vaes(),
        ("name", "file"),
        lambda v: [v.name, v.filename],
        lambda v: {"name": v.name, "filename": v.filename},
        "the server lists no VAEs (put them in models/VAE, then `sdcli refresh vae`)",
        "List the server's VAEs.",
        refresh="vae",
        missing=lambda: _no_route("VAE_PATH", "Forge lists VAEs with its other modules"),
    ),
)


def _register_listing(app: typer.Typer, listing: Listing) -> None:
    def with_refresh(
        ctx: typer.Context, json_lines: JsonFlag = False, refresh: RefreshFlag = False
    ) -> None:
        listing.show(ctx, json_lines, refresh)

    def without(ctx: typer.Context, json_lines: JsonFlag = False) -> None:
        listing.show(ctx, json_lines)

    app.command(
        listing.name,
        help=_list_help(*listing.help),
        short_help=listing.short,
    )(with_refresh if listing.refresh else without)


def register(app: typer.Typer) -> None:
    for listing in LISTINGS:
        _register_listing(app, listing)

    @app.command(
        "upscalers",
        help=_list_help(
            "upscalers for `sdcli upscale` and hires fix (then the latent modes, hires fix only)",
            "name, native scale, kind: extras or latent",
            "name, scale, kind, model_path",
            "  sdcli upscalers\n  sdcli upscalers | awk -F'\\t' '$3 == \"extras\" {print $1}'",
        ),
        short_help="List the server's upscalers.",
    )
    def upscalers(ctx: typer.Context, json_lines: JsonFlag = False) -> None:
        client = _client(ctx)
        found = client.upscaler_list()
        latent = client.latent_upscale_modes()
        rows = [[u.name, _num(u.scale), "extras"] for u in found]
        rows += [[name, "", "latent"] for name in latent]
        items = [
            {"name": u.name, "scale": u.scale, "kind": "extras", "model_path": u.path}
            for u in found
        ]
        items += [{"name": n, "scale": None, "kind": "latent", "model_path": None} for n in latent]
        _show(rows, ["name", "scale", "kind"], items, json_lines, "the server lists no upscalers")

    @app.command("refresh", help=REFRESH_HELP, short_help="Re-scan the server's model folders.")
    def refresh(
        ctx: typer.Context,
        kinds: Annotated[
            list[str] | None,
            typer.Argument(
                help="checkpoints, loras, embeddings, vae (default: all).", metavar="[KIND]..."
            ),
        ] = None,
    ) -> None:
        from sdcli.errors import ApiError, UsageError

        wanted = list(dict.fromkeys(_REFRESH_ALIASES.get(k, k) for k in kinds or REFRESH_KINDS))
        for kind in wanted:
            if kind not in REFRESH_KINDS:
                raise UsageError(f"cannot refresh {kind!r}: choose from {', '.join(REFRESH_KINDS)}")
        client = _client(ctx)
        state: AppState = ctx.obj
        state.list_cache().drop()  # what the server lists may change with the re-scan
        for kind in wanted:
            try:
                _refresh(client, kind)
            except ApiError as exc:
                if exc.status != 404 or kinds:
                    raise
                render.note(f"{kind}: this server cannot re-scan them (no such endpoint)")
                continue
            render.note(f"re-scanned {kind}")


def _client(ctx: typer.Context) -> WebUIClient:
    state: AppState = ctx.obj
    return state.client


def _num(value: float | int | None) -> str:
    return "" if value is None else f"{value:g}"
