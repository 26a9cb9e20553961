"""Everything the pages and ``/metrics`` read, each part cached for ``ttl_s`` seconds.

The dashboard has a storage client of its own, so its transactions are counted apart from
the fold's (``rolecall_storage_transactions_total{component="dashboard"}``): what watching
costs is itself on the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rolecall.controller.service import FoldProgress
from rolecall.controller.web.cache import Cached
from rolecall.controller.web.fleet_view import BaselineVersions, FleetSnapshot, snapshot
from rolecall.controller.web.model import PoisonQueue
from rolecall.controller.web.poison_view import PoisonDepths, PoisonSnapshot
from rolecall.controller.web.runs import RunSummary, RunViews
from rolecall.schemas.runs import RunRecord
from rolecall.storage.clients import Storage
from rolecall.storage.meter import Meter

#: listings are this many seconds old at most when a page or a scrape reads them
DEFAULT_TTL_S = 5.0


@dataclass
class Components:
    """Storage meters by component, and the fold's progress when a fold runs beside us."""

    meters: dict[str, Meter] = field(default_factory=dict)
    progress: FoldProgress | None = None


class DashboardState:
    def __init__(
        self,
        storage: Storage,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        components: Components | None = None,
    ) -> None:
        self.storage = storage
        self.ttl_s = ttl_s
        self.namespace = storage.names.namespace
        self.components = components or Components()
        self.components.meters.setdefault("dashboard", storage.meter)
        self.views = RunViews(storage)
        self.baselines = BaselineVersions(storage)
        self.depths = PoisonDepths(storage)
        self._fleet = Cached(lambda: snapshot(storage, self.baselines, self.views, ttl_s), ttl_s)
        self._runs = Cached(self._list_runs, ttl_s)
        self._poison = Cached(self.depths.refresh, ttl_s)
        self._poison_records = Cached(lambda: self.depths.records(self.poison()), ttl_s)

    def fleet(self) -> FleetSnapshot:
        return self._fleet.get()

    def runs(self) -> list[RunSummary]:
        return self._runs.get()

    def run(self, run_id: str) -> tuple[RunRecord, list[str]] | None:
        return self.views.view(run_id, self.ttl_s)

    def poison(self) -> PoisonSnapshot:
        return self._poison.get()

    def poison_records(self) -> list[PoisonQueue]:
        return self._poison_records.get()

    def close(self) -> None:
        """Before the storage client closes: no load starts any more."""
        for part in (self._fleet, self._runs, self._poison, self._poison_records):
            part.stop()

    def errors(self) -> list[str]:
        """Why some part is showing older data than it should (storage failing)."""
        parts = (self._fleet, self._runs, self._poison, self._poison_records)
        return sorted({p.error for p in parts if p.error})

    def _list_runs(self) -> list[RunSummary]:
        self.views.refresh()
        return self.views.summaries()
