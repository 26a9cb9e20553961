"""What a run's targets did: reports kept in documents that are only ever added, and the view
that joins them with the run's record.

A fold round writes one ``ResultsDelta`` per run it touched (create-only, a fresh name), so
folding never rewrites a document that grows with the run: a 50,000-target run used to be
rewritten whole for every batch of 32 completions. Reading a run lists its deltas, reads
them in parallel and folds every report into the targets the record dispatched. The fold is
a maximum per target, so deltas may overlap, arrive late or be read twice: the view is the
same. Compaction joins a run's deltas into one and deletes the ones it joined; two
compactions at once only leave overlapping deltas, which is harmless.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.errors import NotFound
from rolecall.schemas.events import Completion, Started
from rolecall.schemas.names import Names
from rolecall.schemas.runs import (
    ResultsDelta,
    RunMode,
    RunRecord,
    RunTargets,
    TargetResult,
    TargetState,
)
from rolecall.storage.clients import Storage

#: a run whose reports are spread over more documents than this is compacted when read
COMPACT_AFTER = 16
#: reports per compacted document: a 50,000-target run reads a handful of them in parallel
REPORTS_PER_DOCUMENT = 10_000
_READERS = 8


def fold_report(run: RunRecord, report: Completion | Started) -> RunRecord:
    """The run after one report: pure, order-free and idempotent (see schemas/runs.py)."""
    targets = dict(run.targets)
    if not fold_into(targets, run.mode, report):
        return run
    return run.model_copy(update={"targets": targets})


def fold_into(
    targets: dict[str, TargetResult], mode: RunMode, report: Completion | Started
) -> bool:
    """Fold one report into ``targets`` in place; whether anything changed. A run's view
    folds every report into one dict: copying the dict per report made a 50,000-target
    status quadratic (a minute instead of a second)."""
    key = "any" if mode is RunMode.ANY else report.instance
    target = targets.get(key) or TargetResult(target=key)
    if isinstance(report, Started):
        new = target.folded_started(report)
    elif mode is RunMode.BASELINE and report.step is not None:
        new = target.folded_step(report)
    else:
        new = target.folded(report)
    if new is target and key in targets:
        return False
    targets[key] = new
    return True


def dispatch_view(run: RunRecord, order: list[str]) -> dict[str, TargetResult]:
    """Each target as dispatch left it, before any report: pending, queued since its wave,
    skipped, or not dispatched after the error threshold stopped dispatch."""
    sent_at: list[tuple[int, datetime]] = [(w.end, w.at) for w in run.waves]
    targets: dict[str, TargetResult] = {}
    wave = 0
    for i, name in enumerate(order):
        while wave < len(sent_at) and sent_at[wave][0] <= i:
            wave += 1
        if name in run.skipped:
            t = TargetResult(
                target=name, state=TargetState.NOT_DISPATCHED, reason=run.skipped[name]
            )
        elif i < run.dispatched:
            at = sent_at[wave][1] if wave < len(sent_at) else run.created_at
            t = TargetResult(target=name, state=TargetState.QUEUED, dispatched_at=at)
        elif run.stopped:
            t = TargetResult(target=name, state=TargetState.NOT_DISPATCHED, reason=run.stopped)
        else:
            t = TargetResult(target=name)
        targets[name] = t
    return targets


def assemble(
    run: RunRecord, base: dict[str, TargetResult], deltas: Iterable[ResultsDelta]
) -> RunRecord:
    """The view of a run: its targets as dispatch left them (``base``), every report folded
    in, then cancellation: what was never started reads ``cancelled``; what ran shows what it
    did (a job the cancel stopped reports ``cancelled`` itself)."""
    targets = dict(base)
    for delta in deltas:
        for started in delta.started:
            fold_into(targets, run.mode, started)
        for c in delta.completions:
            fold_into(targets, run.mode, c)
    return cancelled_view(run.model_copy(update={"targets": targets}))


def cancelled_view(run: RunRecord) -> RunRecord:
    if not run.cancelled:
        return run
    waiting = (TargetState.PENDING, TargetState.QUEUED, TargetState.RETRYING)
    targets = {
        k: t.model_copy(update={"state": TargetState.CANCELLED}) if t.state in waiting else t
        for k, t in run.targets.items()
    }
    return run.model_copy(update={"targets": targets})


class Results:
    """A split run's stored pieces: its targets' order and its result documents."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.container = storage.names.state_container

    def write_order(self, run_id: str, order: list[str]) -> None:
        doc = RunTargets(run_id=run_id, order=order)
        path = Names.run_targets_blob(run_id)
        self.storage.put_blob(self.container, path, encode_document(doc), create_only=True)

    def order(self, run_id: str) -> list[str]:
        try:
            blob = self.storage.get_blob(self.container, Names.run_targets_blob(run_id))
        except NotFound:
            return []
        return decode_document(blob.data, RunTargets).order

    def add(self, run_id: str, completions: list[Completion], started: list[Started]) -> None:
        """One create-only document for what a fold round learnt about this run."""
        delta = ResultsDelta(run_id=run_id, completions=completions, started=started)
        self.storage.put_blob(
            self.container, Names.run_results_blob(run_id, _fresh_name()),
            encode_document(delta), create_only=True,
        )  # fmt: skip

    def read(self, run_id: str) -> list[ResultsDelta]:
        """Every result document of the run, read in parallel; compacted when there are
        many (a read is where their number shows)."""
        for _ in range(3):
            try:
                items = self.storage.list_blobs(self.container, Names.run_results_prefix(run_id))
            except NotFound:
                return []
            names = [i.name for i in items]
            found = self._fetch(names)
            deltas = [d for d in found if d is not None]
            if len(deltas) == len(names):
                break
            # some were compacted away after the listing: their joined copy was written
            # first, but after the listing too, so list again
        if len(names) > COMPACT_AFTER:
            self.compact(run_id, names, deltas)
        return deltas

    def compact(self, run_id: str, names: list[str], deltas: list[ResultsDelta]) -> None:
        """Join ``deltas`` into as few documents as hold their reports, then delete the
        ones joined (after the joined ones are written: a crash in between leaves both, which
        fold to the same)."""
        completions = [c for d in deltas for c in d.completions]
        started = [s for d in deltas for s in d.started]
        for k in range(0, max(len(completions), len(started), 1), REPORTS_PER_DOCUMENT):
            self.add(run_id, completions[k : k + REPORTS_PER_DOCUMENT],
                     started[k : k + REPORTS_PER_DOCUMENT])  # fmt: skip
        for name in names:
            self.storage.delete_blob(self.container, name)

    def _fetch(self, names: list[str]) -> list[ResultsDelta | None]:
        """None where a document was deleted since it was listed."""

        def one(name: str) -> ResultsDelta | None:
            try:
                return decode_document(
                    self.storage.get_blob(self.container, name).data, ResultsDelta
                )
            except NotFound:
                return None

        if len(names) <= 2:
            return [one(n) for n in names]
        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            return list(pool.map(one, names))


def _fresh_name() -> str:
    """Sorts by time, unique without coordination."""
    return f"{utcnow():%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"
