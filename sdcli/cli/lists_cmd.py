"""`sdcli loras|embeddings|styles|vaes|upscalers` and `sdcli refresh`: the server's other lists.

Same conventions as `sdcli models`: a table at a terminal, tab-separated lines in a pipe, one
JSON object per line with --json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from sdcli.cli import render
from sdcli.cli.state import AppState

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


def register(app: typer.Typer) -> None:
    @app.command(
        "loras",
        help=_list_help(
            "LoRAs: the name `<lora:NAME:0.8>` takes in a prompt, and the file",
            "name, alias, path",
            "name, alias, path",
            "  sdcli loras\n  sdcli loras | cut -f1",
        ),
        short_help="List the server's LoRAs.",
    )
    def loras(
        ctx: typer.Context, json_lines: JsonFlag = False, refresh: RefreshFlag = False
    ) -> None:
        from sdcli.client import LORAS_PATH
        from sdcli.errors import ApiError

        client = _client(ctx)
        if refresh:
            _refresh(client, "loras")
        found = client.loras()
        if found is None:
            raise ApiError(f"this server has no {LORAS_PATH} (its Lora extension is off)")
        _show(
            [[x.name, x.alias if x.alias != x.name else "", x.path] for x in found],
            ["name", "alias", "path"],
            [{"name": x.name, "alias": x.alias, "path": x.path} for x in found],
            json_lines,
            "the server lists no LoRAs (put them in models/Lora, then `sdcli refresh loras`)",
        )

    @app.command(
        "embeddings",
        help=_list_help(
            "textual-inversion embeddings (a prompt uses them by name); those skipped for the "
            "loaded model's architecture are marked",
            "name, loaded or skipped, vectors",
            "name, loaded, vectors, shape, step, checkpoint",
            "  sdcli embeddings\n  sdcli embeddings --json | jq -r 'select(.loaded) | .name'",
        ),
        short_help="List the server's embeddings.",
    )
    def embeddings(
        ctx: typer.Context, json_lines: JsonFlag = False, refresh: RefreshFlag = False
    ) -> None:
        client = _client(ctx)
        if refresh:
            _refresh(client, "embeddings")
        found = client.embeddings()
        _show(
            [[e.name, "loaded" if e.loaded else "skipped", _num(e.vectors)] for e in found],
            ["name", "state", "vectors"],
            [
                {
                    "name": e.name,
                    "loaded": e.loaded,
                    "vectors": e.vectors,
                    "shape": e.shape,
                    "step": e.step,
                    "checkpoint": e.checkpoint,
                }
                for e in found
            ],
            json_lines,
            "the server lists no embeddings (put them in embeddings/, then "
            "`sdcli refresh embeddings`)",
        )

    @app.command(
        "styles",
        help=_list_help(
            "prompt styles (`--style NAME` in the web UI's sense)",
            "name, prompt, negative prompt",
            "name, prompt, negative_prompt",
            "  sdcli styles\n  sdcli styles --json | jq -r .name",
        ),
        short_help="List the server's prompt styles.",
    )
    def styles(ctx: typer.Context, json_lines: JsonFlag = False) -> None:
        found = _client(ctx).prompt_styles()
        _show(
            [[s.name, s.prompt, s.negative_prompt] for s in found],
            ["name", "prompt", "negative prompt"],
            [
                {"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in found
            ],
            json_lines,
            "the server lists no prompt styles (the web UI keeps them in styles.csv)",
        )

    @app.command(
        "vaes",
        help=_list_help(
            "VAE files (besides Automatic and None)",
            "name, file",
            "name, filename",
            "  sdcli vaes",
        ),
        short_help="List the server's VAEs.",
    )
    def vaes(
        ctx: typer.Context, json_lines: JsonFlag = False, refresh: RefreshFlag = False
    ) -> None:
        from sdcli.client import VAE_PATH
        from sdcli.errors import ApiError

        client = _client(ctx)
        if refresh:
            _refresh(client, "vae")
        found = client.sd_vaes()
        if found is None:
            raise ApiError(
                f"this server has no {VAE_PATH} (Forge lists VAEs with its other modules)"
            )
        _show(
            [[v.name, v.filename] for v in found],
            ["name", "file"],
            [{"name": v.name, "filename": v.filename} for v in found],
            json_lines,
            "the server lists no VAEs (put them in models/VAE, then `sdcli refresh vae`)",
        )

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
