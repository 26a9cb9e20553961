"""Folding what instances report into runs and instance histories.

Reports arrive on each role's results queues (``RESULT_SHARDS`` per role, so no queue needs
more than its Azure target) and, from agents before 0.2, on the one legacy events queue. A
fold round claims a batch from every queue at once, checks every report
(controller/reports.py), writes one result document per run it touched (create-only: no
document that grows with the run is ever rewritten), records hellos, sets aside what it
refused, and only then deletes the messages. Dispatch is driven from here: a run whose
completions made room is advanced at once.

Used by the ``rolecall controller`` service and, opportunistically, by ``status`` and
``wait``, so an operator's one-off command works with no service running. Competing folders
are safe: a queue hands each message to one of them at a time, the fold is idempotent, and
a message folded twice (redelivered after a crash between writing and deleting) only adds a
duplicate report, which folds to the same result.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rolecall.controller.dispatch import Dispatcher
from rolecall.controller.enrolment import EnrolledKeys
from rolecall.controller.reports import Checked, ReportChecker, RunDefinitions
from rolecall.controller.results import Results
from rolecall.controller.store import RunStore
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import encode_message
from rolecall.schemas.errors import ContractError, NotFound, RolecallError
from rolecall.schemas.events import Completion, Hello, Started
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceHistory, PoisonRecord
from rolecall.schemas.runs import RunRecord
from rolecall.storage.clients import Message, Storage
from rolecall.storage.documents import update_document

log = logging.getLogger(__name__)

EVENTS_LEASE_S = 60
#: a message naming a run that does not exist yet is retried this many times (its first wave
#: goes out before its record is written) before its reports are set aside
UNKNOWN_RUN_TRIES = 5
UNKNOWN_RUN_RETRY_S = 5
#: how often the list of results queues is refreshed (a new role appears)
QUEUES_TTL_S = 60.0


@dataclass
class FoldStats:
    messages: int = 0
    completions: int = 0
    hellos: int = 0
    poisoned: int = 0
    set_aside: int = 0
    runs: set[str] = field(default_factory=set)

    def add(self, other: FoldStats) -> None:
        self.messages += other.messages
        self.completions += other.completions
        self.hellos += other.hellos
        self.poisoned += other.poisoned
        self.set_aside += other.set_aside
        self.runs |= other.runs


@dataclass
class _Round:
    """What one fold round gathered from every queue, before it is written."""

    completions: dict[str, list[Completion]] = field(default_factory=lambda: defaultdict(list))
    started: dict[str, list[Started]] = field(default_factory=lambda: defaultdict(list))
    hellos: list[Hello] = field(default_factory=list)
    done: list[Message] = field(default_factory=list)
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
        self._queues: list[str] = []
        self._queues_at = -QUEUES_TTL_S

    # --- rounds --------------------------------------------------------------------------

    def queues(self) -> list[str]:
        """Every results queue of the namespace, and the legacy events queue."""
        if time.monotonic() - self._queues_at >= QUEUES_TTL_S:
            found = self.storage.list_queues(self.names.results_prefix)
            self._queues = [q for q in found if self.names.role_key_of_results_queue(q)]
            self._queues.append(self.names.events_queue)
            self._queues_at = time.monotonic()
        return self._queues

    def fold_once(self, max_messages: int = 32) -> FoldStats:
        """Claim a batch from every queue, fold it, then delete what was folded."""
        batches = list(self._pool.map(lambda q: self._receive(q, max_messages), self.queues()))
        rnd = _Round()
        for msgs in batches:
            for m in msgs:
                self._check(rnd, m)
        self._write(rnd)
        list(self._pool.map(self.storage.delete, rnd.done))
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

    def _receive(self, queue: str, n: int) -> list[Message]:
        try:
            return self.storage.receive(queue, max_messages=n, visibility_s=EVENTS_LEASE_S)
        except NotFound:
            return []  # the legacy events queue of a namespace that never had old agents

    # --- one message ---------------------------------------------------------------------

    def _check(self, rnd: _Round, m: Message) -> None:
        rnd.stats.messages += 1
        try:
            checked = self.checker.check(m.queue, m.content)
        except ContractError as e:
            log.warning("refusing a message from %s: %s", m.queue, e.message)
            self._set_aside(m, e.reason, e.message, m.content)
            rnd.stats.poisoned += 1
            rnd.done.append(m)
            return
        if checked.unknown_runs and m.dequeue_count < UNKNOWN_RUN_TRIES:
            self._create_baseline_runs(m.queue, checked)
            # a run's first wave goes out before its record: look again in a few seconds
            self.storage.extend(m, UNKNOWN_RUN_RETRY_S)
            return
        for refused, raw in checked.refused:
            log.warning("setting aside a report from %s: %s", m.queue, refused.message)
            self._set_aside(m, refused.reason, refused.message, _text(raw))
            rnd.stats.set_aside += 1
        for run_id, cs in checked.completions.items():
            rnd.completions[run_id] += cs
        for run_id, ss in checked.started.items():
            rnd.started[run_id] += ss
        rnd.hellos += checked.hellos
        rnd.done.append(m)

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

    def _create_baseline_runs(self, queue: str, checked: Checked) -> None:
        """A baseline run's record is made when it is published; one published by hand (or
        lost) is made here, for the role whose queue names it."""
        from rolecall.controller.baselines import record_baseline_run

        role_key = self.names.role_key_of_results_queue(queue)
        for run_id, role in checked.unknown_runs.items():
            if role_key is not None and role and run_id.startswith(f"baseline-{role_key}-v"):
                record_baseline_run(self.storage, role, run_id)
                self.runs.get(run_id, fresh=True)

    def _set_aside(self, m: Message, reason: str, error: str, original: str) -> None:
        record = PoisonRecord(
            source_queue=m.queue, reason=reason, error=error[:4096],
            original=original[: 40 * 1024], original_truncated=len(original) > 40 * 1024,
            message_id=m.id, dequeue_count=m.dequeue_count, poisoned_at=utcnow(),
        )  # fmt: skip
        self.storage.send(self.names.poison_queue(m.queue), encode_message(record), create=True)


def _text(raw: dict[str, Any]) -> str:
    return json.dumps(raw, separators=(",", ":"))[: 40 * 1024]
