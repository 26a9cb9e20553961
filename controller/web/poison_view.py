"""Poison queues: how deep each is, and the newest records of the ones that hold any.

Every instance has a poison queue (``<ns>-inst-<name>-poison``), so a 10,000-instance fleet
has over 10,000, nearly all empty. Listing them is one call per 5,000; a queue's depth is a
call of its own. So a refresh looks at every queue known to hold messages, then at up to
``budget`` of the rest, those looked at longest ago first: with the default of 200, a fleet
of up to 200 instances is looked at whole on every refresh, and 10,000 in 50 refreshes,
at a bounded cost each. A peek (the records themselves) is spent only on queues that hold
something, and only for the poison page.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rolecall.controller.web import model
from rolecall.schemas.errors import NotFound
from rolecall.schemas.names import POISON_SUFFIX
from rolecall.storage.clients import Storage

NEWEST = 5


@dataclass(frozen=True)
class PoisonSnapshot:
    depths: dict[str, int]  # queue -> approximate message count, for the queues looked at
    queues: int  # poison queues listed
    unchecked: int  # of those, never looked at yet

    @property
    def total(self) -> int:
        return sum(self.depths.values())

    def nonempty(self) -> list[tuple[str, int]]:
        return sorted(((q, n) for q, n in self.depths.items() if n), key=lambda x: -x[1])


class PoisonDepths:
    def __init__(self, storage: Storage, *, budget: int = 200) -> None:
        self.storage = storage
        self.budget = budget
        self._depth: dict[str, int] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def refresh(self) -> PoisonSnapshot:
        names = self.storage.names
        queues = [q for q in self.storage.list_queues(names.queue_prefix)
                  if q.endswith(POISON_SUFFIX)]  # fmt: skip
        with self._lock:
            nonempty = [q for q in queues if self._depth.get(q)]
            rest = sorted((q for q in queues if not self._depth.get(q)),
                          key=lambda q: self._checked.get(q, 0.0))  # fmt: skip
            for q in nonempty + rest[: self.budget]:
                self._look(q)
            for gone in set(self._depth) - set(queues):
                self._depth.pop(gone, None)
                self._checked.pop(gone, None)
            depths = {q: self._depth[q] for q in queues if q in self._depth}
            return PoisonSnapshot(depths, len(queues), len(queues) - len(depths))

    def _look(self, queue: str) -> None:
        try:
            self._depth[queue] = self.storage.approximate_count(queue)
        except NotFound:
            self._depth[queue] = 0
        self._checked[queue] = time.monotonic()

    def records(self, snapshot: PoisonSnapshot, *, queues: int = 50) -> list[model.PoisonQueue]:
        """The newest records of the ``queues`` deepest queues that hold any (one peek each)."""
        out = []
        for queue, depth in snapshot.nonempty()[:queues]:
            try:
                peeked = self.storage.peek(queue, 32)
            except NotFound:
                continue
            out.append(model.PoisonQueue(queue, depth, model.poison_entries(peeked, NEWEST)))
        return out
