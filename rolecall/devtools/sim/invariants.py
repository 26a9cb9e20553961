"""What must hold after a simulation, checked against ground truth the instances cannot erase.

Ground truth is the ledger: every job and baseline step appends ``job_id instance incarnation
attempt time`` to it when it runs. The checks:

1. no job lost: every target of every run reached a terminal state;
2. every instance's final incarnation applied its role's current baseline, every step;
3. duplicate effects are counted, and each is explained: the instance that ran the job
   earlier was killed or reimaged after it ran, or it logged that it lost the lease;
4. the controller's records agree with the ledger (a succeeded target ran; a failed one ran
   and failed; nothing ran for a target the controller never dispatched);
5. the poison queues hold exactly the messages designed to be bad.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rolecall.controller.fleet import list_instances
from rolecall.controller.poison import list_poison
from rolecall.controller.store import RunStore
from rolecall.schemas.names import Names, name_key
from rolecall.schemas.runs import RunMode, RunRecord, TargetState

if TYPE_CHECKING:
    from rolecall.devtools.sim.runner import SimState


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, problems: list[str], fine: str) -> None:
        shown = "; ".join(problems[:5]) + (
            f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        )
        self.checks.append(Check(name, not problems, shown if problems else fine))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [c.__dict__ for c in self.checks],
            "figures": self.figures,
        }


Ledger = dict[str, list[list[str]]]


def read_ledger(state: SimState) -> Ledger:
    by_job: dict[str, list[list[str]]] = defaultdict(list)
    for line in state.ledger.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            by_job[parts[0]].append(parts)
    return by_job


def lease_losses(state: SimState) -> set[str]:
    """Job ids some worker logged a lost lease for."""
    lost = set()
    for path in (state.root / "logs").glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "lease lost" in line and line.startswith("{"):
                try:
                    job = json.loads(line).get("job_id")
                except ValueError:
                    continue
                if job:
                    lost.add(job)
    return lost


def check(state: SimState) -> Report:
    report = Report()
    ledger = read_ledger(state)
    store = RunStore(state.storage)
    runs = [r for r in (store.get(i) for i in store.list_ids()) if r.mode is not RunMode.BASELINE]
    report.checks.append(Check("converged in time", state.converged, f"{state.elapsed_s:.0f}s"))
    nothing_lost(report, runs)
    baselines_converged(report, state, ledger)
    duplicates = duplicates_explained(report, state, ledger)
    status_matches_ledger(report, state, runs, ledger)
    poison_is_designed(report, state)
    faults = {k: v for k, v in state.plan.counts.items() if k != "requests"}
    agents = Counter(s.agent_version for s in list_instances(state.storage))
    report.figures = {
        "instances": len(state.fleet.instances),
        "agent versions": dict(sorted(agents.items())),
        "runs": len(runs),
        "targets": sum(len(r.targets) for r in runs),
        "effects (ledger lines)": sum(len(v) for v in ledger.values()),
        "duplicate effects": duplicates,
        "reimages": sum(1 for e in state.events if e.kind == "reimage"),
        "reimages mid-job": state.mid_job_reimages,
        "kills": sum(1 for e in state.events if e.kind == "kill"),
        "azurite restarts": sum(1 for e in state.events if e.kind == "azurite_restart"),
        "proxied requests": state.plan.counts.get("requests", 0),
        "injected faults": sum(faults.values()),
        "faults by kind": dict(sorted(faults.items())),
        "lost leases logged": len(lease_losses(state)),
        "controller transactions": state.storage.meter.total,
        "elapsed s": round(state.elapsed_s, 1),
    }
    return report


def nothing_lost(report: Report, runs: list[RunRecord]) -> None:
    open_targets = [
        f"{r.run_id}/{k}={t.state.value}"
        for r in runs
        for k, t in r.targets.items()
        if not t.state.terminal
    ]
    total = sum(len(r.targets) for r in runs)
    report.add("no job lost", open_targets, f"{total} targets in {len(runs)} runs, all terminal")


def baselines_converged(report: Report, state: SimState, ledger: Ledger) -> None:
    problems = []
    for s in list_instances(state.storage):
        inst = state.fleet.instances[s.instance]
        version = state.baseline_versions[s.role_key]
        if s.incarnation != inst.incarnation or s.baseline_version != version:
            problems.append(f"{s.instance}: record says {s.incarnation} v{s.baseline_version}")
        run_id = Names.baseline_run_id(s.role_key, version)
        for i in range(_steps(state)):
            job = f"{run_id}.{name_key(s.instance)}.s{i}"
            if not any(e[2] == inst.incarnation for e in ledger.get(job, [])):
                problems.append(f"{s.instance} ({inst.incarnation}) never ran {job}")
    fine = f"{len(state.fleet.instances)} final incarnations have their role's current baseline"
    report.add("baselines converged", problems, fine)


def duplicates_explained(report: Report, state: SimState, ledger: Ledger) -> int:
    """A repeat of an effect is explained if the instance that had it first was killed or
    reimaged between the two, or logged that it lost the job's lease."""
    kills: dict[str, list[float]] = defaultdict(list)
    for ev in state.events:
        if ev.instance:
            kills[ev.instance].append(ev.at)
    lost = lease_losses(state)
    failing_jobs = {f"{r}.any" for r in state.failing_runs}
    duplicates, unexplained = 0, []
    for job, effects in ledger.items():
        if job in failing_jobs:
            continue
        group = _same_incarnation(effects) if job.startswith("baseline-") else effects
        for earlier, later in itertools.pairwise(sorted(group, key=lambda e: float(e[4]))):
            duplicates += 1
            t0, t1, who = float(earlier[4]), float(later[4]), earlier[1]
            killed = any(t0 <= k <= t1 + 1 for k in kills.get(who, []))
            if not killed and job not in lost:
                unexplained.append(f"{job} ran on {who} then {later[1]}")
    fine = f"{duplicates} duplicate effects, each after a kill/reimage or a lost lease"
    report.add("duplicate effects explained", unexplained, fine)
    return duplicates


def status_matches_ledger(
    report: Report, state: SimState, runs: list[RunRecord], ledger: Ledger
) -> None:
    mismatches = []
    for r in runs:
        designed_to_fail = r.run_id in state.failing_runs
        for key, t in r.targets.items():
            job = Names.job_id(r.run_id, key)
            ran = ledger.get(job, [])
            if t.state.ok and not any(e[1] == t.instance and e[2] == t.incarnation for e in ran):
                mismatches.append(f"{job}: {t.state.value} by {t.instance} but no such effect")
            if t.state is TargetState.FAILED and (not designed_to_fail or not ran):
                mismatches.append(f"{job}: failed unexpectedly ({t.reason})")
            if t.state in (TargetState.PENDING, TargetState.NOT_DISPATCHED) and ran:
                mismatches.append(f"{job}: ran although never dispatched")
            if designed_to_fail and not t.state.error:
                mismatches.append(f"{job}: designed to fail, shown {t.state.value}")
    report.add("controller status equals ground truth", mismatches, "every target's state matches")


def poison_is_designed(report: Report, state: SimState) -> None:
    found_bad, found_runs, other = set(), set(), []
    for e in list_poison(state.storage):
        rec = e.record
        if rec is not None and rec.run_id:
            found_runs.add(rec.run_id)
        elif rec is not None and "sim_bad" in _decoded(rec.original):
            found_bad.add(_decoded(rec.original)["sim_bad"])
        else:
            other.append(f"{e.queue}/{e.message_id}: {rec.reason if rec else '?'}")
    wrong = [f"unexpected poison: {x}" for x in other]
    wrong += [f"good run poisoned: {r}" for r in found_runs - state.failing_runs]
    wrong += [f"designed-bad not poisoned: {x}" for x in state.malformed_ids - found_bad]
    wrong += [f"failing run not poisoned: {x}" for x in state.failing_runs - found_runs]
    fine = f"{len(found_bad)} malformed + {len(found_runs)} always-failing, nothing else"
    report.add("poison holds exactly the designed-bad work", wrong, fine)


def _steps(state: SimState) -> int:
    from rolecall.controller.baselines import current_baseline

    role = next(iter(state.baseline_versions))
    baseline, _ = current_baseline(state.storage, role)
    return len(baseline.steps) if baseline else 0


def _same_incarnation(effects: list[list[str]]) -> list[list[str]]:
    """Baseline steps run again in every incarnation by design; only repeats within one
    incarnation are duplicates. Returns the longest such group."""
    groups: dict[str, list[list[str]]] = defaultdict(list)
    for e in effects:
        groups[e[2]].append(e)
    return max(groups.values(), key=len) if groups else []


def _decoded(text: str) -> dict[str, Any]:
    import base64

    try:
        data = json.loads(base64.b64decode(text))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
