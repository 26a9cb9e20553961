"""Where a worker's start-up time goes before it does anything: ``python -X importtime``.

The real start path is measured (``rolecall worker ... --once`` applying a baseline), so the
lazy imports inside commands count too. Reported per root package (self times summed: what
removing or deferring that dependency would save) and per import (cumulative: what
the heaviest imports cost, with the chain of imports that pulled each one in).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")

ENTRY = "from rolecall.cli import main; main()"


@dataclass
class ImportCost:
    total_us: int
    by_package: list[tuple[str, int]]
    top_level: list[tuple[str, int]]
    modules: int


def parse(stderr: str, max_depth: int = 4) -> ImportCost:
    """Import times per root package, and the heaviest imports with the chain that pulled
    them in. ``-X importtime`` prints a module after its own imports (post-order), indented
    two spaces per level, so a line adopts every deeper line printed since."""
    by_package: Counter[str] = Counter()
    stack: list[tuple[int, str, int, list[Any]]] = []  # depth, name, cumulative, children
    modules = 0
    for line in stderr.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        self_us, cumulative, depth, name = int(m[1]), int(m[2]), (len(m[3]) - 1) // 2, m[4]
        modules += 1
        by_package[name.split(".")[0]] += self_us
        children = []
        while stack and stack[-1][0] > depth:
            children.append(stack.pop())
        stack.append((depth, name, cumulative, children[::-1]))
    heavy: list[tuple[str, int]] = []

    def walk(node: tuple[int, str, int, list[Any]], path: str) -> None:
        depth, name, cumulative, children = node
        here = f"{path} › {name}" if path else name
        if 1 <= depth <= max_depth:
            heavy.append((here, cumulative))
        for child in children:
            walk(child, here)

    for root in stack:
        walk(root, "")
    heavy.sort(key=lambda x: -x[1])
    return ImportCost(sum(by_package.values()), by_package.most_common(), heavy, modules)


def measure(args: list[str], env: dict[str, str]) -> ImportCost:
    """Run ``rolecall ARGS`` under ``-X importtime`` and parse what it printed."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker under -X importtime failed: {out.stderr[-2000:]}")
    return parse(out.stderr)


def table(cost: ImportCost, n: int = 12) -> str:
    rows = [
        f"Imports on the worker's start path: {cost.modules} modules, "
        f"{cost.total_us / 1000:.0f} ms in total (sum of self times).",
        "",
        "| root package | self time, summed | share |",
        "|---|---:|---:|",
    ]
    for name, us in cost.by_package[:n]:
        rows.append(f"| {name} | {us / 1000:.1f} ms | {us / cost.total_us:.0%} |")
    rows += ["", "| heaviest imports (the chain that pulled each in) | cumulative |", "|---|---:|"]
    for name, us in cost.top_level[:n]:
        rows.append(f"| {name} | {us / 1000:.1f} ms |")
    return "\n".join(rows)
