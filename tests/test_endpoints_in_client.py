"""Every endpoint path lives in sdcli/client.py: a flavour's quirk or a new endpoint is then one
edit, and no module builds a URL the client does not know about (docstrings may name paths)."""

from __future__ import annotations

import ast
from pathlib import Path

SDCLI = Path(__file__).resolve().parent.parent / "sdcli"
MARKERS = ("/sdapi", "/internal/")


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (of the module, classes, functions)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def endpoint_literals(path: Path) -> list[str]:
    """`file:line: text` for each string literal (f-string parts too) naming an API path."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstrings(tree)
    return [
        f"{path.relative_to(SDCLI.parent)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and any(marker in node.value for marker in MARKERS)
    ]


def test_no_endpoint_path_outside_the_client() -> None:
    outside = [
        hit
        for path in sorted(SDCLI.rglob("*.py"))
        if path.name != "client.py" or path.parent != SDCLI
        if "testing" not in path.relative_to(SDCLI).parts
        for hit in endpoint_literals(path)
    ]
    assert outside == [], "endpoint paths belong in sdcli/client.py:\n" + "\n".join(outside)


def test_the_scan_sees_the_clients_own_paths() -> None:
    """The scan itself works: it finds the paths where they are meant to be."""
    hits = "\n".join(endpoint_literals(SDCLI / "client.py"))
    assert "'/sdapi/v1'" in hits
    assert "'/internal/ping'" in hits
    assert "'/internal/progress'" in hits
