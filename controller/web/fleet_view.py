"""The fleet page's data: every instance as a cell, grouped by role, with each role's
compliance against its current baseline.

Aggregate first: one listing of the instance records (5,000 a call, their state in the
metadata), one listing of the baselines (each read again only when its ETag changes), and,
for each role, the current baseline run's view (``runs.py``: its new result documents only),
which says which instances fail a step. The pages then count; a 10,000-instance role is shown
as counts and a bar, with its cells one click further.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from rolecall.controller.fleet import InstanceSummary
from rolecall.controller.web import model
from rolecall.controller.web.runs import RunViews
from rolecall.schemas.base import utcnow
from rolecall.schemas.baseline import Baseline
from rolecall.schemas.errors import NotFound
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from rolecall.storage.documents import read_document


@dataclass(frozen=True)
class RoleFleet:
    key: str
    role: str  # as the baseline names it; the key where there is no baseline
    current: int | None
    cells: list[model.Cell]
    counts: dict[str, int]

    @property
    def live(self) -> int:
        return sum(self.live_counts.values())

    @property
    def live_counts(self) -> dict[str, int]:
        return {s: n for s, n in self.counts.items() if s not in ("lost", "stopped")}

    @property
    def compliant(self) -> int:
        """Live, ready, on the current baseline (or ready at all where there is none)."""
        return self.counts.get("ready", 0)

    @property
    def ratio(self) -> float:
        return self.compliant / self.live if self.live else 0.0

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass(frozen=True)
class FleetSnapshot:
    at: datetime
    roles: list[RoleFleet]
    instances: list[InstanceSummary] = field(default_factory=list)

    def role(self, key: str) -> RoleFleet | None:
        return next((r for r in self.roles if r.key == key), None)


class BaselineVersions:
    """Each role's current baseline (role name and version), re-read only when it changed."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._known: dict[str, tuple[str, Baseline]] = {}  # key -> (etag, baseline)
        self._lock = threading.Lock()

    def current(self) -> dict[str, Baseline]:
        container = self.storage.names.state_container
        try:
            items = self.storage.list_blobs(container, Names.baselines_prefix())
        except NotFound:
            return {}
        with self._lock:
            keys = {}
            for item in items:
                key = item.name[len(Names.baselines_prefix()) :].removesuffix(".json")
                keys[key] = item
                known = self._known.get(key)
                if known is None or known[0] != item.etag:
                    found = read_document(self.storage, container, item.name, Baseline)
                    if found is not None:
                        self._known[key] = (item.etag, found[0])
            self._known = {k: v for k, v in self._known.items() if k in keys}
            return {k: b for k, (_, b) in self._known.items()}


def snapshot(
    storage: Storage, baselines: BaselineVersions, runs: RunViews, max_age_s: float
) -> FleetSnapshot:
    now = utcnow()
    listed = model.instances(storage)
    current = baselines.current()
    by_role: dict[str, list[InstanceSummary]] = {}
    for s in listed:
        by_role.setdefault(s.role_key, []).append(s)
    for key in current:
        by_role.setdefault(key, [])
    roles = []
    for key, members in sorted(by_role.items()):
        b = current.get(key)
        failures: dict[str, str] = {}
        if b is not None:
            found = runs.view(Names.baseline_run_id(b.role, b.version), max_age_s)
            failures = model.baseline_failures(found[0] if found else None)
        cells = [model.cell(s, b.version if b else None, failures.get(s.instance), now)
                 for s in members]  # fmt: skip
        counts = Counter(c.status for c in cells)
        roles.append(RoleFleet(key, b.role if b else key, b.version if b else None, cells,
                               {s: counts[s] for s in model.STATUSES if counts[s]}))  # fmt: skip
    return FleetSnapshot(now, roles, listed)
