"""The shape the team keeps (docs/architecture.md): small modules of one concept, short
functions, and worker and controller apart. Checked on the product code only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("schemas", "storage", "worker", "controller", "rolecall")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def product_modules() -> list[Path]:
    files = [p for d in PRODUCT for p in (REPO / d).rglob("*.py")]
    return sorted(p for p in files if "devtools" not in p.parts and not p.is_symlink())


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, "split the module: a second concept"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"  # type: ignore[operator]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]
    assert not long, "functions over 50 lines usually hide a second idea"


def test_worker_and_controller_never_import_each_other() -> None:
    for side, other in (("worker", "controller"), ("controller", "worker")):
        for path in (REPO / side).rglob("*.py"):
            bad = {m for m in _imports(ast.parse(path.read_text())) if f".{other}." in f".{m}."}
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
