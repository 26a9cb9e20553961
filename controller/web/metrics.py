"""``/metrics``: the dashboard's state in the Prometheus text format.

Built at each scrape from the same cached parts the pages read (state.py), so a scrape costs
what a page view costs, and nothing when a page was just shown. Counters the controller
keeps itself (the fold, its storage meters) are read as they are; counters the workers keep
are summed from what each instance record reports (its incarnation's own totals, so a
reimage starts its share again from zero: ``rate()`` reads that as a counter reset).
docs/operators.md lists every metric.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rolecall import __version__
from rolecall.controller.web import model
from rolecall.controller.web.fleet_view import FleetSnapshot
from rolecall.controller.web.state import DashboardState
from rolecall.schemas.base import utcnow
from rolecall.schemas.version import CONTRACT
from rolecall.storage.meter import OPERATIONS
from rolecall.storage.retry import ERROR_KINDS

#: (component or role, transactions by operation, failed attempts by kind)
Spent = tuple[str, dict[str, int], dict[str, int]]

_FOLD_COUNTERS = (
    ("rounds", "rolecall_fold_rounds", "Fold rounds completed by this controller"),
    ("failed_rounds", "rolecall_fold_failed_rounds", "Fold rounds that failed (retried)"),
    ("reports", "rolecall_fold_reports", "Reports (batches) folded or refused"),
    ("completions", "rolecall_fold_completions", "Completions folded into runs"),
    ("hellos", "rolecall_fold_hellos", "Hellos (an incarnation's boot) recorded"),
    ("refused", "rolecall_fold_reports_refused", "Reports refused and set aside in poison"),
)


class DashboardCollector(Collector):
    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("rolecall_controller", "The controller serving these metrics")
        info.add_metric([], {"version": __version__, "contract": str(CONTRACT),
                             "namespace": self.state.namespace})  # fmt: skip
        yield info
        fleet = self.state.fleet()
        yield from _instances(fleet)
        yield from _baselines(fleet)
        yield from self._runs()
        yield from self._fold()
        yield from self._poison()
        yield from self._storage(fleet)

    def _runs(self) -> Iterator[Metric]:
        by_state: Counter[tuple[str, ...]] = Counter()
        by_target: Counter[tuple[str, ...]] = Counter()
        for r in self.state.runs():
            by_state[(r.role, r.state)] += 1
            for state, n in r.counts.items():
                by_target[(r.role, state)] += n
        yield _counted(GaugeMetricFamily, "rolecall_runs", "Runs by role and state (as "
                       "`rolecall status` shows them; unread: not read yet)",
                       ["role", "state"], by_state)  # fmt: skip
        yield _counted(GaugeMetricFamily, "rolecall_run_targets", "Targets of every run, by "
                       "role and state (outcome, once final)", ["role", "state"],
                       by_target)  # fmt: skip

    def _fold(self) -> Iterator[Metric]:
        progress = self.state.components.progress
        if progress is None:
            return  # no fold beside this dashboard (the demo folds on its own)
        now = progress.snapshot()
        for key, name, text in _FOLD_COUNTERS:
            yield CounterMetricFamily(name, text, value=now[key])
        yield GaugeMetricFamily("rolecall_fold_lag_seconds", "Age of the oldest report the "
                                "last fold round found waiting", value=now["lag_s"])  # fmt: skip
        yield GaugeMetricFamily("rolecall_fold_last_round_timestamp_seconds",
                                "When the last fold round completed (Unix time)",
                                value=now["last_round"])  # fmt: skip

    def _poison(self) -> Iterator[Metric]:
        poison = self.state.poison()
        depth = GaugeMetricFamily("rolecall_poison_messages", "Messages in a poison queue "
                                  "(queues holding any)", labels=["queue"])  # fmt: skip
        for queue, n in poison.nonempty():
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily("rolecall_poison_queues", "Poison queues listed",
                                value=poison.queues)  # fmt: skip
        yield GaugeMetricFamily("rolecall_poison_queues_unchecked", "Poison queues whose "
                                "depth was not looked at yet", value=poison.unchecked)  # fmt: skip

    def _storage(self, fleet: FleetSnapshot) -> Iterator[Metric]:
        meters = self.state.components.meters.items()
        yield from _storage_families(
            "rolecall_storage", "this controller, by component", "component",
            ((component, m.snapshot(), m.errors()) for component, m in meters),
        )  # fmt: skip
        yield from _storage_families(
            "rolecall_worker_storage", "a role's workers, as their current incarnations "
            "report them, by role", "role",
            ((s.role_key, known(s.transactions, OPERATIONS), known(s.storage_errors, ERROR_KINDS))
             for s in fleet.instances),
        )  # fmt: skip


def _counted(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    text: str,
    labels: list[str],
    counts: Counter[tuple[str, ...]],
) -> Metric:
    """A family with one sample per counted label tuple, in a stable order."""
    family = kind(name, text, labels=labels)
    for values, n in sorted(counts.items()):
        family.add_metric(list(values), n)
    return family


def _instances(fleet: FleetSnapshot) -> Iterator[Metric]:
    now = utcnow()
    counts: Counter[tuple[str, ...]] = Counter(
        (s.role_key, s.state, model.liveness(s, now)) for s in fleet.instances
    )
    yield _counted(GaugeMetricFamily, "rolecall_instances", "Instances by role, state (as the "
                   "agent reports it) and liveness", ["role", "state", "liveness"],
                   counts)  # fmt: skip


def _baselines(fleet: FleetSnapshot) -> Iterator[Metric]:
    names = (
        ("rolecall_baseline_version", "The role's current baseline version"),
        ("rolecall_baseline_compliant_instances", "Live instances ready on the current baseline"),
        ("rolecall_baseline_failing_instances", "Live instances failing a step of the baseline"),
        ("rolecall_baseline_stale_instances", "Live instances ready on an older baseline"),
        ("rolecall_baseline_compliance_ratio", "Compliant instances over live instances"),
    )
    families = [GaugeMetricFamily(n, text, labels=["role"]) for n, text in names]
    for r in fleet.roles:
        if r.current is None:
            continue
        values = (r.current, r.compliant, r.count("failed"), r.count("stale"), r.ratio)
        for family, value in zip(families, values, strict=True):
            family.add_metric([r.key], value)
    yield from families


def known(counts: dict[str, int], names: frozenset[str]) -> dict[str, int]:
    """An instance's counts with any name the code never gives summed as ``other``: what an
    instance reports becomes a metric label, and a hostile one could otherwise mint labels
    across the fleet (32 a record, times every instance) until the scrape is unusable."""
    out: Counter[str] = Counter()
    for name, n in counts.items():
        out[name if name in names else "other"] += n
    return dict(out)


def _storage_families(
    prefix: str, whose: str, label: str, sources: Iterable[Spent]
) -> Iterator[Metric]:
    """Transactions by operation and failed attempts by kind, summed per ``label``."""
    ops: Counter[tuple[str, ...]] = Counter()
    kinds: Counter[tuple[str, ...]] = Counter()
    for key, transactions, errors in sources:
        ops.update({(key, op): n for op, n in transactions.items()})
        kinds.update({(key, kind): n for kind, n in errors.items()})
    yield _counted(CounterMetricFamily, f"{prefix}_transactions", f"Storage transactions of "
                   f"{whose} and operation", [label, "operation"], ops)  # fmt: skip
    yield _counted(CounterMetricFamily, f"{prefix}_errors", f"Failed storage attempts of "
                   f"{whose} and kind", [label, "kind"], kinds)  # fmt: skip
