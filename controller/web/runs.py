"""Every run's view, kept up to date from listings of ``runs/`` instead of read again.

A run's view joins its record, its order and its result documents (controller/results.py).
One listing of the state container's ``runs/`` (5,000 names a call) shows every record with
its ETag and every result document by name; result documents are create-only, so a name
once read never needs reading again, and a run whose record ETag and document names did not
change since the last look costs nothing. A run that changed costs its record (if that
changed) and its new documents; its view is then folded again here, which is what the CLI's
``status`` does too, so both show the same.

A finished run keeps only its summary (state, counts); a run still moving, or one whose page
is open, keeps its pieces so the next look reads only what is new. At most ``budget`` runs
are read per refresh, newest first, so a namespace with years of runs comes up in a few
refreshes rather than one very long one; until then the rest count as unread. This reader
never writes: compaction is the folding controller's business.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import unquote

from rolecall.controller.results import Results, assemble, dispatch_view
from rolecall.controller.web import model
from rolecall.schemas.codec import decode_document
from rolecall.schemas.errors import NotFound
from rolecall.schemas.names import Names
from rolecall.schemas.runs import ResultsDelta, RunRecord
from rolecall.storage.clients import BlobItem, Storage
from rolecall.storage.documents import read_document

UNREAD = "unread"
#: a run whose page was looked at this recently keeps its pieces (seconds)
KEEP_WATCHED_S = 600.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    role: str
    mode: str
    created_at: datetime
    state: str = UNREAD
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    description: str = ""


@dataclass
class _Listed:
    """A run's stored pieces as one listing saw them."""

    record: BlobItem | None = None
    results: list[str] = field(default_factory=list)

    def signature(self) -> tuple[str, frozenset[str]]:
        return (self.record.etag if self.record else "", frozenset(self.results))


@dataclass
class _Run:
    summary: RunSummary
    signature: tuple[str, frozenset[str]] | None = None
    record: RunRecord | None = None
    record_etag: str = ""
    order: list[str] | None = None
    deltas: dict[str, ResultsDelta] = field(default_factory=dict)
    view: RunRecord | None = None
    listed_at: float = 0.0
    watched_at: float = 0.0


def _parse(name: str) -> tuple[str, str] | None:
    """(run id, ``record`` or ``result``) for a name under ``runs/``; None for the rest."""
    if (run_id := Names.run_id_of_blob(name)) is not None:
        return run_id, "record"
    run_id, _, tail = name[len("runs/") :].partition("/")
    return (run_id, "result") if tail.startswith("results/") and run_id else None


def _group(items: Iterable[BlobItem]) -> dict[str, _Listed]:
    runs: dict[str, _Listed] = {}
    for item in items:
        parsed = _parse(item.name)
        if parsed is None:
            continue
        listed = runs.setdefault(parsed[0], _Listed())
        if parsed[1] == "record":
            listed.record = item
        else:
            listed.results.append(item.name)
    return runs


def _listed_summary(run_id: str, item: BlobItem) -> RunSummary:
    """What the record's metadata says, before (or without) reading the record."""
    meta = item.metadata
    try:
        created = datetime.fromisoformat(meta["created"])
    except (KeyError, ValueError):  # a record from before the dashboard
        created = item.last_modified or _EPOCH
    total = meta.get("total", "")
    return RunSummary(run_id, unquote(meta.get("role", "")), meta.get("mode", ""), created,
                      total=int(total) if total.isdigit() else 0)  # fmt: skip


def _viewed_summary(view: RunRecord) -> RunSummary:
    return RunSummary(
        run_id=view.run_id, role=view.role, mode=view.mode.value, created_at=view.created_at,
        state=view.state.value, counts=model.run_counts(view), total=len(view.targets),
        description=view.description,
    )  # fmt: skip


class RunViews:
    def __init__(self, storage: Storage, *, budget: int = 100) -> None:
        self.storage = storage
        self.container = storage.names.state_container
        self.results = Results(storage)
        self.budget = budget
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dashboard-runs")

    # --- what pages ask --------------------------------------------------------------------

    def refresh(self) -> None:
        """List ``runs/`` and bring up to date what changed (``budget`` runs at most)."""
        items = self._list(Names.runs_prefix())
        with self._lock:
            listed = _group(items)
            for gone in set(self._runs) - set(listed):
                del self._runs[gone]
            changed = [r for r, pieces in listed.items() if self._changed(r, pieces)]
            changed.sort(key=lambda r: self._runs[r].summary.created_at, reverse=True)
            for run_id in changed[: self.budget]:
                self._load(run_id, listed[run_id])
            now = time.monotonic()
            for run_id in listed:
                if run_id in self._runs:
                    self._runs[run_id].listed_at = now

    def summaries(self) -> list[RunSummary]:
        """Every run, newest first."""
        with self._lock:
            found = [r.summary for r in self._runs.values()]
        return sorted(found, key=lambda s: (s.created_at, s.run_id), reverse=True)

    def view(self, run_id: str, max_age_s: float) -> tuple[RunRecord, list[str]] | None:
        """The run's view and its targets' order, looked at again (one List Blobs call) if
        the last look is older than ``max_age_s``; None if there is no such run."""
        with self._lock:
            known = self._runs.get(run_id)
            stale = known is None or time.monotonic() - known.listed_at >= max_age_s
        if stale or known is None or known.view is None:
            self._refresh_one(run_id)
        with self._lock:
            known = self._runs.get(run_id)
            if known is None or known.view is None or known.record is None:
                return None
            known.watched_at = time.monotonic()
            order = known.order if known.order is not None else list(known.view.targets)
            return known.view, order

    # --- reading ---------------------------------------------------------------------------

    def _list(self, prefix: str) -> list[BlobItem]:
        try:
            return self.storage.list_blobs(self.container, prefix, metadata=True)
        except NotFound:
            return []

    def _refresh_one(self, run_id: str) -> None:
        Names.run_blob(run_id)  # refuses an id that is not one (it comes from a URL)
        listed = _group(self._list(f"runs/{run_id}")).get(run_id)
        with self._lock:
            if listed is None or listed.record is None:
                self._runs.pop(run_id, None)
                return
            if self._changed(run_id, listed) or self._runs[run_id].view is None:
                self._load(run_id, listed, keep=True)
            self._runs[run_id].listed_at = time.monotonic()

    def _changed(self, run_id: str, listed: _Listed) -> bool:
        if listed.record is None:
            return False  # results of a run whose record is not written yet
        known = self._runs.get(run_id)
        if known is None:
            self._runs[run_id] = known = _Run(_listed_summary(run_id, listed.record))
        return known.signature != listed.signature()

    def _load(self, run_id: str, listed: _Listed, *, keep: bool = False) -> None:
        """Read what changed of one run and fold its view again."""
        run = self._runs[run_id]
        assert listed.record is not None
        if run.record is None or run.record_etag != listed.record.etag:
            found = read_document(self.storage, self.container, Names.run_blob(run_id), RunRecord)
            if found is None:
                return
            run.record, run.record_etag = found
        record = run.record
        if record.split and record.order is None and run.order is None:
            run.order = self.results.order(run_id)
        complete = self._read_results(run, listed.results)
        base = record.targets if not record.split else dispatch_view(
            record, record.order if record.order is not None else run.order or [])  # fmt: skip
        run.view = assemble(record, base, run.deltas.values())
        run.signature = listed.signature() if complete else None
        run.summary = _viewed_summary(run.view)
        watched = time.monotonic() - run.watched_at < KEEP_WATCHED_S
        if run.summary.state in model.FINISHED and not record.active and not (keep or watched):
            run.record, run.order, run.deltas, run.view = None, None, {}, None

    def _read_results(self, run: _Run, names: list[str]) -> bool:
        """Read the documents not read before; forget the ones gone (compacted: their
        reports are in a newer one). False if one vanished between listing and reading."""
        new = [n for n in names if n not in run.deltas]
        found = list(self._pool.map(self._get_delta, new))
        run.deltas = {n: d for n, d in run.deltas.items() if n in names}
        run.deltas.update({n: d for n, d in zip(new, found, strict=True) if d is not None})
        return all(d is not None for d in found)

    def _get_delta(self, name: str) -> ResultsDelta | None:
        try:
            return decode_document(self.storage.get_blob(self.container, name).data, ResultsDelta)
        except NotFound:
            return None
