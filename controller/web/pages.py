"""How the pages present what state.py holds: progress bars, ages, filters and paging. Pure
functions of the data (no web library), so they are tested and reused without a server."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rolecall.controller.web import model
from rolecall.controller.web.runs import RunSummary
from rolecall.schemas.base import utcnow
from rolecall.schemas.runs import RunRecord, TargetResult, TargetState

#: the order states are drawn in a bar: done first, then moving, then waiting
#: (a run's target states and the fleet's instance statuses)
BAR_ORDER = ("succeeded", "ready", "reboot_required", "failed", "timed_out", "rejected",
             "expired", "stale", "cancelled", "not_dispatched", "running", "configuring",
             "booting", "reboot_pending", "retrying", "queued", "pending")  # fmt: skip
#: a role with at most this many instances shows its cells on the fleet page itself
INLINE_CELLS = 400
#: cells on one page of a role's drill-down
CELLS_PER_PAGE = 2000
#: rows of a table of targets or runs
ROWS = 200


@dataclass(frozen=True)
class Segment:
    state: str
    x: float
    width: float
    count: int


def segments(counts: dict[str, int], total: int | None = None) -> list[Segment]:
    """A stacked bar, in percent of ``total`` (default: the counts' sum)."""
    total = total or sum(counts.values())
    out, x = [], 0.0
    ordered = [s for s in BAR_ORDER if counts.get(s)] + sorted(
        s for s in counts if s not in BAR_ORDER and counts[s]
    )
    for state in ordered:
        width = 100.0 * counts[state] / total if total else 0.0
        out.append(Segment(state, round(x, 3), round(width, 3), counts[state]))
        x += width
    return out


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "never"
    s = max(0, int(((now or utcnow()) - when).total_seconds()))
    if s < 90:
        return f"{s}s ago"
    if s < 5400:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def done(counts: dict[str, int]) -> int:
    return sum(n for s, n in counts.items() if TargetState(s).terminal)


def filter_runs(runs: Iterable[RunSummary], role: str, state: str) -> list[RunSummary]:
    return [r for r in runs if (not role or r.role == role) and (not state or r.state == state)]


@dataclass(frozen=True)
class Wave:
    label: str
    at: datetime | None
    counts: dict[str, int]

    @property
    def size(self) -> int:
        return sum(self.counts.values())


def _counts(view: RunRecord, names: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        if (t := view.targets.get(name)) is not None:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
    return counts


def waves(view: RunRecord, order: list[str]) -> list[Wave]:
    """The run's waves with what became of each one's targets. A run from before 0.2, and an
    ``--any`` run, is one wave; targets not dispatched yet are the last row, and a baseline
    run's instances that joined after it was published one more."""
    bounds = [(w.end, w.at) for w in view.waves] or [(len(order), view.created_at)]
    out, start = [], 0
    for i, (end, at) in enumerate(bounds, 1):
        out.append(Wave(f"wave {i}", at, _counts(view, order[start:end])))
        start = end
    if start < len(order):
        out.append(Wave("not sent yet", None, _counts(view, order[start:])))
    listed = set(order)
    joined = [k for k in view.targets if k not in listed]
    if joined:
        out.append(Wave("joined later", None, _counts(view, joined)))
    return [w for w in out if w.size]


def target_rows(view: RunRecord) -> tuple[list[TargetResult], list[TargetResult]]:
    """Failures first (all of them, up to ``ROWS``), then the rest that are not done well."""
    failed = [t for t in view.targets.values() if t.state.error][:ROWS]
    other = [t for t in view.targets.values() if not t.state.error and not t.state.ok]
    return failed, other[:ROWS]


def tail(t: TargetResult) -> str:
    return model.tail_line(t)


def page_of(items: list[Any], page: int, size: int) -> tuple[list[Any], int, int]:
    """Items of the 1-based ``page`` (clamped), that page's number, how many pages there are."""
    pages = max(1, -(-len(items) // size))
    page = min(max(page, 1), pages)
    return items[(page - 1) * size : page * size], page, pages
