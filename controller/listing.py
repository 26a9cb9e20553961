"""``rolecall runs``: recent runs, from one listing of the state container's ``runs/``.

What a run is (role, mode, creation time, targets, description) travels in its record's blob
metadata (controller/store.py), so listing runs reads no record. How a run *ended* is not in
its record: reports are kept in result documents the fold only adds (controller/results.py).
So a finished run's outcome is remembered beside it once it is known (``runs/<id>.done``,
state and counts in its metadata, written by ``rolecall wait`` or by this listing), and the
listing, which sees every result document's name and time anyway, knows when a remembered
outcome has been overtaken by a later report (a poisoned job requeued, say). Only the runs
shown whose outcome is not remembered are read, at most ``MAX_VIEWS`` a listing: a namespace
with 50,000 runs lists in a few calls a 5,000 names, never fifty thousand reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from rolecall.controller.store import RunStore
from rolecall.schemas.errors import ConfigError, NotFound, UnknownRun
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunRecord, RunState
from rolecall.storage.clients import BlobItem, Storage

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FINISHED = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)
#: runs read (their results joined) by one listing, at most
MAX_VIEWS = 50
UNKNOWN = "?"


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    role: str
    mode: str
    created_at: datetime | None
    total: int
    description: str
    issuer: str
    state: str = UNKNOWN
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "role": self.role or None, "mode": self.mode or None,
            "state": self.state if self.state != UNKNOWN else None,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "targets": self.total, "summary": self.counts, "description": self.description,
            "issuer": self.issuer or None,
        }  # fmt: skip


@dataclass
class Listed:
    runs: list[RunSummary]
    #: runs whose outcome this listing did not read (over ``MAX_VIEWS``)
    unread: int = 0
    #: runs it read
    views: int = 0


def parse_span(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``2w``."""
    m = _SPAN.match(text.strip().lower())
    if m is None:
        raise ConfigError(f"--since {text!r}: give a span such as 30m, 2h or 7d")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def remember(storage: Storage, run: RunRecord) -> None:
    """Keep how ``run`` (a view, with its targets) ended, if it has."""
    if run.state not in FINISHED or run.active:
        return
    storage.put_blob(
        storage.names.state_container, Names.run_summary_blob(run.run_id), b"",
        metadata={"state": run.state.value, "counts": _counts(run)}, content_type="text/plain",
    )  # fmt: skip


def _counts(run: RunRecord) -> str:
    counts: dict[str, int] = {}
    for t in run.targets.values():
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    return ",".join(f"{k}:{n}" for k, n in sorted(counts.items()))


def _parse_counts(text: str) -> dict[str, int]:
    pairs = (part.partition(":") for part in filter(None, text.split(",")))
    return {state: int(n) for state, _, n in pairs if n.isdigit()}


@dataclass
class _Scan:
    records: dict[str, BlobItem] = field(default_factory=dict)
    outcomes: dict[str, BlobItem] = field(default_factory=dict)
    latest_report: dict[str, datetime] = field(default_factory=dict)

    def add(self, item: BlobItem) -> None:
        if (run_id := Names.run_id_of_blob(item.name)) is not None:
            self.records[run_id] = item
        elif (run_id := Names.run_id_of_summary_blob(item.name)) is not None:
            self.outcomes[run_id] = item
        elif (run_id := Names.run_id_of_results_blob(item.name)) is not None:
            at = item.last_modified or _EPOCH
            self.latest_report[run_id] = max(at, self.latest_report.get(run_id, _EPOCH))

    def remembered(self, run_id: str) -> tuple[str, dict[str, int]] | None:
        """The outcome kept beside the run, unless a report came after it."""
        item = self.outcomes.get(run_id)
        if item is None or (item.last_modified or _EPOCH) < self.latest_report.get(run_id, _EPOCH):
            return None
        return item.metadata.get("state", UNKNOWN), _parse_counts(item.metadata.get("counts", ""))


def _summary(run_id: str, item: BlobItem) -> RunSummary:
    meta = item.metadata
    try:
        created: datetime | None = datetime.fromisoformat(meta["created"])
    except (KeyError, ValueError):
        created = item.last_modified
    total = meta.get("total", "")
    return RunSummary(
        run_id=run_id, role=unquote(meta.get("role", "")), mode=meta.get("mode", ""),
        created_at=created, total=int(total) if total.isdigit() else 0,
        description=unquote(meta.get("desc", "")), issuer=unquote(meta.get("issuer", "")),
    )  # fmt: skip


def list_runs(
    storage: Storage,
    *,
    role: str | None = None,
    state: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
) -> Listed:
    """Runs newest first, filtered by role, state and creation time; at most ``limit`` (0:
    no limit)."""
    scan = _Scan()
    try:
        for item in storage.list_blobs(
            storage.names.state_container, Names.runs_prefix(), metadata=True
        ):
            scan.add(item)
    except NotFound:
        return Listed([])
    runs = [_summary(run_id, item) for run_id, item in scan.records.items()]
    runs = [r for r in runs if (role is None or r.role == role) and _after(r, since)]
    runs.sort(key=lambda r: (r.created_at or _EPOCH, r.run_id), reverse=True)
    out = Listed([])
    store = RunStore(storage)
    for listed in runs:
        if limit and len(out.runs) >= limit:
            break
        r = _with_outcome(store, scan, listed, out)
        if state is None or r.state == state:
            out.runs.append(r)
    return out


def _after(r: RunSummary, since: datetime | None) -> bool:
    return since is None or (r.created_at is not None and r.created_at >= since)


def _with_outcome(store: RunStore, scan: _Scan, r: RunSummary, out: Listed) -> RunSummary:
    known = scan.remembered(r.run_id)
    if known is not None:
        return replace(r, state=known[0], counts=known[1])
    if out.views >= MAX_VIEWS:
        out.unread += 1
        return r
    out.views += 1
    try:
        view = store.get(r.run_id)
    except (NotFound, UnknownRun):
        return r
    remember(store.storage, view)
    counts = _parse_counts(_counts(view))
    return replace(r, state=view.state.value, counts=counts, total=len(view.targets))
