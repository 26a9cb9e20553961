"""docs/security.md claims nothing without a test: every test its attack table names exists.

Each row of "Attacks and the tests that prove them" names the tests that prove its outcome
(``tests/file.py::test_name``, later names of the same file as ``::test_name``). A renamed or
deleted test would leave a claim standing with nothing behind it; this fails instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
FINDINGS = range(1, 11)


def _table() -> list[str]:
    text = DOC.read_text()
    start = text.index("## Attacks and the tests that prove them")
    end = text.index("\n## ", start + 1)
    return [line for line in text[start:end].splitlines() if line.startswith("| ")][2:]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def _named(cell: str) -> list[tuple[str, str | None]]:
    """(file, test or None for a whole file) for every test a row's last cell names."""
    out: list[tuple[str, str | None]] = []
    current = ""
    for ref in re.findall(r"`([^`]+)`", cell):
        file, _, name = ref.partition("::")
        current = file or current
        out.append((current, name or None))
    return out


def test_every_test_the_attack_table_names_exists() -> None:
    rows = _table()
    assert rows, "the attack table is empty"
    for row in rows:
        cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
        named = _named(cell)
        assert named, f"a row names no test: {row[:80]}"
        for file, name in named:
            path = ROOT / file
            assert path.is_file(), f"{file} (named in docs/security.md) does not exist"
            if name is not None:
                assert name in _tests_in(path), f"{file}::{name} (docs/security.md) is gone"


def test_every_finding_of_the_review_has_a_row() -> None:
    rows = _table()
    for n in FINDINGS:
        assert any(f"({n}) |" in row for row in rows), f"finding {n} has no row"
