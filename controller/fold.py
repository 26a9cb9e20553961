"""Folding what instances report into runs and instance histories.

Reports arrive as blobs in each role's results container (one blob per batch an agent
posts, the batch in the blob's metadata when small) and, from agents before 0.2, as messages
on the one legacy events queue. A fold round lists every results container (one List Blobs
call per 5,000 reports: a 10,000-target run's completions are read with two calls and no
reads at all), checks every report (controller/reports.py), writes one result document per
run it touched (create-only: no document that grows with the run is ever rewritten), records
hellos and sets aside what it refused. Only then are the folded reports deleted, in the
background and 256 to a request: a queue would need a delete per report, and those
deletes were most of a fold. Dispatch is driven from here: a run whose completions made
room is advanced at once.

Used by the ``rolecall controller`` service and, opportunistically, by ``status`` and
``wait``, so an operator's one-off command works with no service running. Competing folders
are safe: the fold is idempotent, so a report folded twice (by two controllers, or again
after a crash between writing and deleting) only adds a duplicate, which folds to the same
result.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from rolecall.controller.dispatch import Dispatcher
from rolecall.controller.enrolment import EnrolledKeys
from rolecall.controller.reports import Checked, ReportChecker, RunDefinitions
from rolecall.controller.results import Results
from rolecall.controller.store import RunStore
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import REPORT_MAX_BYTES, encode_message, report_text
from rolecall.schemas.errors import ContractError, NotFound, RolecallError
from rolecall.schemas.events import Completion, Hello, Started
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceHistory, PoisonRecord
from rolecall.schemas.runs import RunRecord
from rolecall.storage.clients import BlobItem, Message, Storage
from rolecall.storage.documents import update_document

log = logging.getLogger(__name__)

EVENTS_LEASE_S = 60
#: a report naming a run that does not exist yet is looked at again until it is this old (a
#: run's first wave goes out before its record is written), then set aside
UNKNOWN_RUN_WAIT_S = 60.0
UNKNOWN_RUN_TRIES = 5
UNKNOWN_RUN_RETRY_S = 5
#: reports a round takes from one role's container, and how many a List Blobs page returns
#: (a page of 5,000 with their batches inline is 6 MB: smaller pages come back sooner)
ROUND_REPORTS = 5000
REPORTS_PAGE = 1000
#: how often the list of results containers is refreshed (a new role appears)
SOURCES_TTL_S = 60.0


@dataclass
class FoldStats:
    messages: int = 0
    completions: int = 0
    hellos: int = 0
    poisoned: int = 0
    set_aside: int = 0
    runs: set[str] = field(default_factory=set)
    #: age of the oldest report the round found waiting (the fold's lag), seconds
    oldest_s: float = 0.0

    def add(self, other: FoldStats) -> None:
        self.messages += other.messages
        self.completions += other.completions
        self.hellos += other.hellos
        self.poisoned += other.poisoned
        self.set_aside += other.set_aside
        self.runs |= other.runs
        self.oldest_s = max(self.oldest_s, other.oldest_s)


@dataclass
class _Round:
    """What one fold round gathered from every queue, before it is written."""

    completions: dict[str, list[Completion]] = field(default_factory=lambda: defaultdict(list))
    started: dict[str, list[Started]] = field(default_factory=lambda: defaultdict(list))
    hellos: list[Hello] = field(default_factory=list)
    done: list[Message] = field(default_factory=list)
    folded: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    stats: FoldStats = field(default_factory=FoldStats)


class EventFolder:
    def __init__(self, storage: Storage, dispatcher: Dispatcher | None = None) -> None:
        self.storage = storage
        self.names = storage.names
        self.store = RunStore(storage)
        self.results = Results(storage)
        self.dispatcher = dispatcher or Dispatcher(storage)
        self.runs = RunDefinitions(storage)
        self.checker = ReportChecker(storage, EnrolledKeys(storage), self.runs)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fold")
        self._cleaner = Cleanup(storage)
        self._sources: list[str] = []
        self._sources_at = -SOURCES_TTL_S

    # --- rounds --------------------------------------------------------------------------

    def sources(self) -> list[str]:
        """Every role's results container (refreshed a minute at most)."""
        if time.monotonic() - self._sources_at >= SOURCES_TTL_S:
            found = self.storage.list_containers(self.names.results_prefix)
            self._sources = [c for c in found if self.names.role_key_of_results_container(c)]
            self._sources_at = time.monotonic()
        return self._sources

    def fold_once(self) -> FoldStats:
        """List every role's reports and take a batch of legacy messages; fold them; then
        delete what was folded (the blobs in the background)."""
        listed = list(self._pool.map(self._list, self.sources()))
        legacy = self._receive(self.names.events_queue, 32)
        rnd = _Round()
        rnd.stats.oldest_s = _oldest(listed, legacy)
        for container, items in listed:
            for item in items:
                self._check_report(rnd, container, item)
        for m in legacy:
            self._check_message(rnd, m)
        self._write(rnd)
        list(self._pool.map(self.storage.delete, rnd.done))
        for container, names in rnd.folded.items():
            self._cleaner.delete(container, names)
        self._advance(rnd)
        return rnd.stats

    def fold_all(self, max_rounds: int = 1000) -> FoldStats:
        total = FoldStats()
        for _ in range(max_rounds):
            s = self.fold_once()
            total.add(s)
            if s.messages == 0:
                break
        return total

    def close(self, wait_s: float = 5.0) -> None:
        """Give the background deletes up to ``wait_s`` to finish (whatever is left is folded
        again by the next folder, which changes nothing, and deleted then)."""
        self._cleaner.close(wait_s)

    def _list(self, container: str) -> tuple[str, list[BlobItem]]:
        """A round takes at most ``ROUND_REPORTS`` of a role's reports (a page at a time):
        its memory and its time stay bounded however many wait; the next round takes more."""
        try:
            items = self.storage.list_blobs(
                container, "", metadata=True, limit=ROUND_REPORTS, page_size=REPORTS_PAGE,
                skip=lambda name: self._cleaner.pending(container, name),
            )  # fmt: skip
        except NotFound:
            return container, []
        return container, items

    def _receive(self, queue: str, n: int) -> list[Message]:
        try:
            return self.storage.receive(queue, max_messages=n, visibility_s=EVENTS_LEASE_S)
        except NotFound:
            return []  # the legacy events queue of a namespace that never had old agents

    # --- one report ----------------------------------------------------------------------

    def _check_report(self, rnd: _Round, container: str, item: BlobItem) -> None:
        rnd.stats.messages += 1
        role_key = self.names.role_key_of_results_container(container)
        try:
            text = self._report_text(container, item)
            checked = self.checker.check(role_key, text)
        except ContractError as e:
            log.warning("refusing a report in %s: %s", container, e.message)
            self._set_aside(
                container, item.name, e.reason, e.message, item.metadata.get("batch", "")
            )
            rnd.stats.poisoned += 1
            rnd.folded[container].append(item.name)
            return
        age = (utcnow() - item.last_modified).total_seconds() if item.last_modified else 1e9
        if checked.unknown_runs and age < UNKNOWN_RUN_WAIT_S:
            self._create_baseline_runs(role_key, checked)
            return  # looked at again next round: the run's record may not be written yet
        self._take(rnd, checked, container, item.name)
        rnd.folded[container].append(item.name)

    def _report_text(self, container: str, item: BlobItem) -> str:
        """The report's batch: from the listing's metadata, or its body (read only if it is
        no bigger than a report may be: anyone of the role can create a blob here)."""
        if item.metadata.get("batch"):
            return report_text(b"", item.metadata)
        if item.size > REPORT_MAX_BYTES:
            raise ContractError(f"report is {item.size:,} bytes; at most {REPORT_MAX_BYTES:,}",
                                reason="too_large")  # fmt: skip
        try:
            return report_text(self.storage.get_blob(container, item.name).data, {})
        except NotFound as e:
            raise ContractError("report vanished before it was read") from e

    def _check_message(self, rnd: _Round, m: Message) -> None:
        """A legacy events message (agents before 0.2)."""
        rnd.stats.messages += 1
        try:
            checked = self.checker.check(None, m.content)
        except ContractError as e:
            log.warning("refusing a message from %s: %s", m.queue, e.message)
            self._set_aside(m.queue, m.id, e.reason, e.message, m.content)
            rnd.stats.poisoned += 1
            rnd.done.append(m)
            return
        if checked.unknown_runs and m.dequeue_count < UNKNOWN_RUN_TRIES:
            self.storage.extend(m, UNKNOWN_RUN_RETRY_S)
            return
        self._take(rnd, checked, m.queue, m.id)
        rnd.done.append(m)

    def _take(self, rnd: _Round, checked: Checked, source: str, name: str) -> None:
        for refused, raw in checked.refused:
            log.warning("setting aside a report from %s: %s", source, refused.message)
            self._set_aside(source, name, refused.reason, refused.message, _text(raw))
            rnd.stats.set_aside += 1
        for run_id, cs in checked.completions.items():
            rnd.completions[run_id] += cs
        for run_id, ss in checked.started.items():
            rnd.started[run_id] += ss
        rnd.hellos += checked.hellos

    def _write(self, rnd: _Round) -> None:
        """One result document per run, then the hellos: all before any message is deleted.
        A write that fails leaves every message of the round to be folded again."""
        runs = set(rnd.completions) | set(rnd.started)
        list(self._pool.map(
            lambda r: self.results.add(r, rnd.completions.get(r, []), rnd.started.get(r, [])),
            runs,
        ))  # fmt: skip
        for h in rnd.hellos:
            self._record_hello(h)
        rnd.stats.runs |= runs
        rnd.stats.completions += sum(len(cs) for cs in rnd.completions.values())
        rnd.stats.hellos += len(rnd.hellos)

    def _advance(self, rnd: _Round) -> None:
        """Runs whose completions made room for more (or crossed the error threshold)."""
        for run_id in rnd.completions:
            run = self.runs.get(run_id)
            if run is not None and run.record.active:
                try:
                    self.dispatcher.dispatch(run_id)
                except RolecallError as e:
                    log.warning("cannot dispatch %s yet: %s", run_id, e.message)

    def advance(self, run_id: str) -> RunRecord:
        """Dispatch whatever rate control allows now (no events needed); the run's view."""
        return self.dispatcher.dispatch(run_id)

    def sweep(self) -> int:
        """Advance every run that still has undispatched targets.

        Dispatch is normally driven by folding completions; this catches a run whose first
        wave never went out (its creator crashed, or storage failed between creating the
        record and dispatching)."""
        ids = self.store.list_ids(active_only=True)
        for run_id in ids:
            self.advance(run_id)
        return len(ids)

    # --- hellos, baseline runs, set-asides -----------------------------------------------

    def _record_hello(self, h: Hello) -> None:
        """Add the incarnation to the instance's history. If the history keeps changing under
        us this raises ConcurrencyConflict before any message of the round is deleted, so the
        hello is folded again when its message reappears, not lost."""

        def seen(history: InstanceHistory | None) -> InstanceHistory:
            if history is None:
                history = InstanceHistory(role=h.role, instance=h.instance)
            return history.with_hello(h.incarnation, h.boot_time, h.agent_version)

        path = Names.history_blob(h.role, h.instance)
        update_document(self.storage, self.names.state_container, path, InstanceHistory, seen)

    def _create_baseline_runs(self, role_key: str | None, checked: Checked) -> None:
        """A baseline run's record is made when it is published; one published by hand (or
        lost) is made here, for the role whose channel names it."""
        from rolecall.controller.baselines import record_baseline_run

        for run_id, role in checked.unknown_runs.items():
            if role_key is not None and role and run_id.startswith(f"baseline-{role_key}-v"):
                record_baseline_run(self.storage, role, run_id)
                self.runs.get(run_id, fresh=True)

    def _set_aside(self, source: str, name: str, reason: str, error: str, original: str) -> None:
        """A refused report, kept with its reason in ``<source>-poison`` (a queue)."""
        record = PoisonRecord(
            source_queue=source, reason=reason, error=error[:4096],
            original=original[: 40 * 1024], original_truncated=len(original) > 40 * 1024,
            message_id=name[:200], poisoned_at=utcnow(),
        )  # fmt: skip
        self.storage.send(self.names.poison_queue(source), encode_message(record), create=True)


class Cleanup:
    """Deletes folded report blobs in the background, 256 to a request; remembers which are
    on their way out so the next round does not fold them again."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._pending: set[tuple[str, str]] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fold-cleanup")
        self._futures: list[Future[None]] = []

    def pending(self, container: str, name: str) -> bool:
        with self._lock:
            return (container, name) in self._pending

    def delete(self, container: str, names: list[str]) -> None:
        with self._lock:
            self._pending.update((container, n) for n in names)
        self._futures.append(self._pool.submit(self._delete, container, names))

    def _delete(self, container: str, names: list[str]) -> None:
        try:
            self.storage.delete_blobs(container, names)
        except RolecallError as e:
            log.warning("could not delete %d folded reports yet: %s", len(names), e.message)
        finally:
            with self._lock:
                self._pending.difference_update((container, n) for n in names)

    def close(self, wait_s: float) -> None:
        wait(self._futures, timeout=wait_s)
        self._pool.shutdown(wait=False)


def _oldest(listed: list[tuple[str, list[BlobItem]]], legacy: list[Message]) -> float:
    """How long the oldest report found waiting has waited (by the service's clock: the
    listing's Last-Modified and the queue's insertion time, never an instance's)."""
    times = [i.last_modified for _, items in listed for i in items]
    times += [m.inserted_on for m in legacy]
    known = [t for t in times if t is not None]
    return max(0.0, (utcnow() - min(known)).total_seconds()) if known else 0.0


def _text(raw: dict[str, Any]) -> str:
    return json.dumps(raw, separators=(",", ":"))[: 40 * 1024]
