"""The shape of the house (README "Module map"), checked on the source: imports go down the
layers only, the environment is read in config.py alone, and the glibc heap trick is wired by
front ends, never by the core. Ruff's TID251 rule keeps typer and rich under sdcli/cli/;
test_endpoints_in_client.py keeps endpoint paths in client.py."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SDCLI = Path(__file__).parent.parent / "sdcli"

# Top to bottom; a module may import its own layer and those below it, never one above.
FRONT_ENDS, USE_CASES, FORMATS, INFRA = 4, 3, 2, 1
LAYERS = {
    "sdcli.__main__": FRONT_ENDS,
    "sdcli.cli": FRONT_ENDS,
    "sdcli.interactive": FRONT_ENDS,
    # the core a front end calls: parse -> plan -> run -> render
    "sdcli.plan": USE_CASES,
    "sdcli.job": USE_CASES,
    "sdcli.run": USE_CASES,
    "sdcli.schedule": USE_CASES,
    "sdcli.progress": USE_CASES,
    "sdcli.save": USE_CASES,
    "sdcli.events": USE_CASES,
    "sdcli.heap": USE_CASES,
    "sdcli.jobs": USE_CASES,
    "sdcli.describe": USE_CASES,
    "sdcli.sweeps": USE_CASES,  # X/Y/Z plot axes and their cells
    "sdcli.grid": USE_CASES,  # the X/Y/Z plot grid images (a sink)
    "sdcli.upscale": USE_CASES,
    "sdcli.history": USE_CASES,  # the local history: store, migrations, the recording sink
    "sdcli.journal": USE_CASES,  # the run journal: store, record, keeper (plans, records, resumes)
    # what is read, written and sent; what the server has
    "sdcli.prompts": FORMATS,
    "sdcli.dynprompts": FORMATS,  # dynamic prompts: templates, wildcards
    "sdcli.presets": FORMATS,
    "sdcli.preset_schema": FORMATS,
    "sdcli.requestcheck": FORMATS,
    "sdcli.payload": FORMATS,
    "sdcli.pinning": FORMATS,
    "sdcli.names": FORMATS,
    "sdcli.infotext": FORMATS,
    "sdcli.pngmeta": FORMATS,
    "sdcli.imageparams": FORMATS,
    "sdcli.inputs": FORMATS,
    "sdcli.output": FORMATS,
    "sdcli.catalog": FORMATS,
    "sdcli.serverinfo": FORMATS,
    # HTTP, settings, errors
    "sdcli": INFRA,  # the package itself: __version__
    "sdcli.client": INFRA,
    "sdcli.apiparse": INFRA,
    "sdcli.apitypes": INFRA,
    "sdcli.listtypes": INFRA,
    "sdcli.listcache": INFRA,
    "sdcli.deadline": INFRA,
    "sdcli.config": INFRA,
    "sdcli.errors": INFRA,
    "sdcli.datatypes": INFRA,  # how the dataclasses are made (@frozen, @mutable)
}
# Where the environment may be read: config, for every setting and the terminal's conventions.
READS_ENVIRONMENT = {"sdcli.config"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    """Every module of the package but the fake web UI (a test tool, on no layer)."""
    for path in sorted(SDCLI.rglob("*.py")):
        parts = path.relative_to(SDCLI.parent).with_suffix("").parts
        if parts[1:2] == ("testing",):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, ast.parse(path.read_text(encoding="utf-8"), str(path))


def layer_of(module: str) -> int | None:
    """The layer of a module, or of the subpackage that holds it (sdcli.cli, sdcli.names)."""
    while module not in LAYERS and module.count(".") > 1:
        module = module.rsplit(".", 1)[0]
    return LAYERS.get(module)


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) of every sdcli import, lazy ones inside functions too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("sdcli"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sdcli"):
            if node.module == "sdcli":  # `from sdcli import client` imports a module
                yield from ((node.lineno, f"sdcli.{a.name}") for a in node.names)
            else:
                yield node.lineno, node.module


def test_every_module_has_a_layer() -> None:
    missing = [name for name, _ in modules() if layer_of(name) is None]
    assert missing == [], f"give these a layer here and in the README's module map: {missing}"


def test_imports_go_down_the_layers_only() -> None:
    upward = []
    for name, tree in modules():
        own = layer_of(name)
        for line, target in imported(tree):
            if target == "sdcli.__version__":
                target = "sdcli"
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{name}:{line} imports {target}")
    assert upward == []


def test_the_environment_is_read_in_config_only() -> None:
    readers = []
    for name, tree in modules():
        if any(name == m or name.startswith(m + ".") for m in READS_ENVIRONMENT):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in ("environ", "environb", "getenv", "getenvb", "putenv")
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(a.name in ("environ", "environb", "getenv", "getenvb") for a in node.names)
            ):
                readers.append(f"{name}:{node.lineno}")
    assert readers == []


def test_the_heap_trick_is_wired_by_front_ends_only() -> None:
    """A process-wide trick (sdcli.heap): the front end that knows the run is long adds it."""
    wiring = [
        f"{name}:{line}"
        for name, tree in modules()
        for line, target in imported(tree)
        if target == "sdcli.heap" and layer_of(name) != FRONT_ENDS
    ]
    assert wiring == []
