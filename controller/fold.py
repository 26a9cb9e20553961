"""Folding events into run records and instance histories.

Used by the ``rolecall controller`` service loop and, opportunistically, by ``status`` and
``wait``, so an operator's one-off command works with no service running. Competing folders
are safe: the events queue hands each message to one of them at a time, record writes are
ETag-guarded, and the fold is idempotent, so a message folded twice (redelivered after a
crash between write and delete) changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rolecall.controller.dispatch import Dispatcher, plan
from rolecall.controller.store import RunStore
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_message, encode_message
from rolecall.schemas.errors import ContractError
from rolecall.schemas.events import Completion, EventBatch, Hello
from rolecall.schemas.names import Names
from rolecall.schemas.records import (
    InstanceHistory,
    PoisonRecord,
    RunMode,
    RunRecord,
    TargetResult,
)
from rolecall.schemas.version import SUPPORTED_MAJORS
from rolecall.storage.clients import Message, Storage
from rolecall.storage.documents import update_document

log = logging.getLogger(__name__)

EVENTS_LEASE_S = 60


@dataclass
class FoldStats:
    messages: int = 0
    completions: int = 0
    hellos: int = 0
    poisoned: int = 0
    runs: set[str] = field(default_factory=set)


def fold_completion(run: RunRecord, c: Completion) -> RunRecord:
    """The run after ``c``; pure, order-free and idempotent (see TargetResult)."""
    key = "any" if run.mode is RunMode.ANY else c.instance
    target = run.targets.get(key) or TargetResult(target=key)
    if run.mode is RunMode.BASELINE and c.step is not None:
        new = target.folded_step(c)
    else:
        new = target.folded(c, cancelled=run.cancelled)
    if new is target and key in run.targets:
        return run
    return run.model_copy(update={"targets": {**run.targets, key: new}})


def orphan_run(c: Completion) -> RunRecord:
    """A record for events whose run has none (a baseline run, or a hand-made job)."""
    now = utcnow()
    mode = (
        RunMode.BASELINE
        if c.step is not None
        else (RunMode.ANY if c.job_id.endswith(".any") else RunMode.EACH)
    )
    return RunRecord(
        run_id=c.run_id, role=c.role, mode=mode, created_at=now, updated_at=now,
        description="(recorded from events)",
    )  # fmt: skip


class EventFolder:
    def __init__(self, storage: Storage, dispatcher: Dispatcher | None = None) -> None:
        self.storage = storage
        self.store = RunStore(storage)
        self.dispatcher = dispatcher or Dispatcher(storage)
        self.queue = storage.names.events_queue
        self._deleters: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        """Kept across rounds: starting 8 threads for every batch of 32 costs more than the
        deletes they overlap save on a busy controller."""
        if self._deleters is None:
            self._deleters = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fold-delete")
        return self._deleters

    def fold_once(self, max_messages: int = 32) -> FoldStats:
        """Claim one batch of event messages, fold them, then delete them."""
        stats = FoldStats()
        msgs = self.storage.receive(
            self.queue, max_messages=max_messages, visibility_s=EVENTS_LEASE_S
        )
        stats.messages = len(msgs)
        completions: dict[str, list[Completion]] = defaultdict(list)
        hellos: list[Hello] = []
        good: list[Message] = []
        for m in msgs:
            try:
                batch = decode_message(m.content, EventBatch, SUPPORTED_MAJORS)
            except ContractError as e:
                self._poison(m, e)
                stats.poisoned += 1
                continue
            good.append(m)
            for ev in batch.events:
                if isinstance(ev, Completion):
                    completions[ev.run_id].append(ev)
                else:
                    hellos.append(ev)
        for run_id, events in completions.items():
            self.fold_run(run_id, events)
            stats.runs.add(run_id)
            stats.completions += len(events)
        for h in hellos:
            self._record_hello(h)
        stats.hellos = len(hellos)
        # only after every fold above is written; independent round trips, so overlapped
        if len(good) > 2:
            list(self._pool().map(self.storage.delete, good))
        else:
            for m in good:
                self.storage.delete(m)
        return stats

    def fold_all(self, max_rounds: int = 1000) -> FoldStats:
        total = FoldStats()
        for _ in range(max_rounds):
            s = self.fold_once()
            total.messages += s.messages
            total.completions += s.completions
            total.hellos += s.hellos
            total.poisoned += s.poisoned
            total.runs |= s.runs
            if s.messages == 0:
                break
        return total

    def fold_run(self, run_id: str, events: list[Completion]) -> RunRecord:
        def change(run: RunRecord) -> RunRecord:
            for c in events:
                run = fold_completion(run, c)
            return run

        run = self.store.update(run_id, change, create=lambda: orphan_run(events[0]))
        planned, keys = plan(run)
        if keys or planned != run:
            # completions made room for more, or crossed the error threshold
            run = self.dispatcher.dispatch(run_id)
        return run

    def advance(self, run_id: str) -> RunRecord:
        """Dispatch whatever rate control allows now (no events needed)."""
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

    def _record_hello(self, h: Hello) -> None:
        """Add the incarnation to the instance's history. If the history keeps changing under
        us this raises ConcurrencyConflict before any message of the batch is deleted, so the
        hello is folded again when its message reappears, not lost."""

        def seen(history: InstanceHistory | None) -> InstanceHistory:
            if history is None:
                history = InstanceHistory(role=h.role, instance=h.instance)
            return history.with_hello(h.incarnation, h.boot_time, h.agent_version)

        path = Names.history_blob(h.role, h.instance)
        update_document(
            self.storage, self.storage.names.state_container, path, InstanceHistory, seen
        )

    def _poison(self, m: Message, e: ContractError) -> None:
        log.warning("poisoning malformed events message %s: %s", m.id, e.message)
        record = PoisonRecord(
            source_queue=m.queue, reason=e.reason, error=e.message,
            original=m.content[:40 * 1024], original_truncated=len(m.content) > 40 * 1024,
            message_id=m.id, dequeue_count=m.dequeue_count, poisoned_at=utcnow(),
        )  # fmt: skip
        poison = self.storage.names.poison_queue(m.queue)
        self.storage.send(poison, encode_message(record), create=True)
        self.storage.delete(m)
