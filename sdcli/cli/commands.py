"""Which module registers each command, so a run imports only the command it runs.

Start-up is paid on every call of a shell loop (bench/RESULTS.md): `sdcli generate` imports
generate_cmd and no other command module; `sdcli --help` lists every command from this table
without importing any; completion, a typo or an unusual command line gets them all.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

# A new command is one row here, where `sdcli --help` should list it, and a `register(app)`
# in its module under sdcli.cli that adds it: (name, module, the line `sdcli --help` shows for
# it: its short_help, else its help's first paragraph; None for a hidden alias).
# tests/test_startup.py checks that the rows and what the modules register agree.
COMMANDS: tuple[tuple[str, str, str | None], ...] = (
    (
        "generate",
        "generate_cmd",
        "Generate images with txt2img and print each saved path on stdout, one per line.",
    ),
    (
        "img2img",
        "generate_cmd",
        "Generate images from images (img2img, inpainting with --mask); "
        "print each saved path on stdout.",
    ),
    (
        "rerun",
        "history_cmd",
        "Send a recorded request again: an ID from `sdcli history`, or an image file.",
    ),
    (
        "set-model",
        "models_cmd",
        "Switch the server's checkpoint and print the loaded title on stdout.",
    ),
    ("models", "models_cmd", "List the server's checkpoints; the loaded one is marked *."),
    ("samplers", "models_cmd", "List the server's samplers and schedulers."),
    (
        "info",
        "info_cmd",
        "Show the server (flavour, version, model, busy?) or the parameters in images.",
    ),
    ("interrupt", "jobs_cmd", "Stop the server's running job."),
    ("skip", "jobs_cmd", "Skip the image the server is making."),
    ("loras", "lists_cmd", "List the server's LoRAs."),
    ("embeddings", "lists_cmd", "List the server's embeddings."),
    ("styles", "lists_cmd", "List the server's prompt styles."),
    ("vaes", "lists_cmd", "List the server's VAEs."),
    ("upscalers", "lists_cmd", "List the server's upscalers."),
    ("refresh", "lists_cmd", "Re-scan the server's model folders."),
    ("describe", "describe_cmd", "Caption or tag images (interrogate)."),
    ("upscale", "upscale_cmd", "Upscale images on the server (extras)."),
    ("show", "show_cmd", "Draw images in the terminal with their parameters."),
    (
        "interactive",
        "interactive_cmd",
        "Interactive mode: type a prompt, press Enter, get an image; "
        "adjust with / commands; again.",
    ),
    ("i", "interactive_cmd", None),
    ("runs", "runs_cmd", "Runs of many requests and how far they got."),
    ("resume", "runs_cmd", "Finish a run that stopped (the last unfinished one by default)."),
    ("presets", "presets_cmd", "List, show, create and edit presets (TOML files)."),
    (
        "history",
        "history_cmd",
        "Every generation remembered: search it, show one, re-run one (`sdcli rerun ID`).",
    ),
)

NAMES = frozenset(name for name, _, _ in COMMANDS)


def register(app: typer.Typer, names: Collection[str] | None = None) -> None:
    """Add the commands called `names` (every command: None) to `app`, importing only the
    modules that register them."""
    from sdcli.cli.helpformat import use_sdcli_classes

    rows = [row for row in COMMANDS if names is None or row[0] in names]
    for module in dict.fromkeys(module for _, module, _ in rows):  # once each, in table order
        # __import__, not importlib.import_module: `python -X importtime` logs only the former
        __import__(f"sdcli.cli.{module}", fromlist=["register"]).register(app)
    # Only those asked for (a module may add siblings: generate_cmd adds img2img), in the
    # table's order (a module adds its commands when its first row comes).
    place = {name: n for n, (name, _, _) in enumerate(rows)}
    app.registered_commands = sorted(
        (c for c in app.registered_commands if c.name in place), key=lambda c: place[c.name or ""]
    )
    app.registered_groups = sorted(
        (g for g in app.registered_groups if g.name in place), key=lambda g: place[g.name or ""]
    )
    use_sdcli_classes(app)


def register_listing(app: typer.Typer) -> None:
    """For `sdcli --help` alone: every listed command as a stand-in with its one-line help,
    no module imported. The help option answers before any command could run."""
    for name, _, short in COMMANDS:
        if short is not None:
            app.command(name, help=short, short_help=short, add_help_option=False)(_listed_only)


def _listed_only() -> None:
    raise RuntimeError("a command stand-in of the --help listing was run")
