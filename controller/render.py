"""The three output formats every data command offers, as the Azure CLI does: ``table`` for
people, ``json`` for programs (one document on stdout), ``tsv`` for shell loops (no header,
one row a line, tabs between fields, nothing that needs quoting)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    TSV = "tsv"


Output = Annotated[
    Format,
    typer.Option(
        "--output", "-o", case_sensitive=False, metavar="table|json|tsv",
        help="table (default), json (one document) or tsv (no header; for shell loops).",
    ),
]  # fmt: skip


def cell(value: object) -> str:
    """A field for TSV: tabs and line breaks would split it."""
    if value is None:
        return ""
    return " ".join(str(value).split())


def print_tsv(rows: Sequence[Sequence[object]]) -> None:
    for row in rows:
        sys.stdout.write("\t".join(cell(v) for v in row) + "\n")


def print_table(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    empty: str,
    title: str | None = None,
) -> None:
    """A Rich table; ``empty`` (one line) instead of an empty frame when there are no rows.
    Cells are plain text (an instance's name or output is not markup) unless they are Rich
    ``Text``, which is how a caller colours one."""
    from rich.table import Table
    from rich.text import Text

    if not rows:
        console.print(Text(empty))
        return
    table = Table(title=title, title_justify="left")
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v))
                        for v in row))  # fmt: skip
    console.print(table)


def styled(text: str, style: str) -> object:
    """A table cell in a colour (see :func:`print_table`)."""
    from rich.text import Text

    return Text(text, style=style)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 target``, ``2 targets``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
