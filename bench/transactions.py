"""Benchmark 2: storage transactions per job, exact, split by operation and by side.

Azure bills queue and blob storage per transaction, so this is what a job costs in money.
The scenario is the real operator path: the controller (in this process, its Storage metered
by ``storage.meter``) starts N one-job ``--any`` runs with ``controller.runs.start_run``; W
real ``rolecall worker --once`` processes drain the role queue and dump their counts with
``--stats-file``; then the controller folds every event with ``controller.fold.EventFolder``.

A worker process also pays a fixed cost per start (provisioning, registering, hello, the last
empty poll, the shutdown record). It is measured on its own (a worker started on an empty
queue) so the per-job figure at load can be stated both with and without it.
"""

from __future__ import annotations

import time
from collections import Counter

from bench.core import TRUE_SH, Sandbox, Section, Size, sandbox
from bench.rc import EventReader, read_stats, register_instance
from rolecall.controller.fold import EventFolder
from rolecall.controller.published import PublishedPayloads
from rolecall.controller.runs import RunRequest, start_run
from rolecall.schemas.runs import RunMode
from rolecall.storage.meter import Meter

ROLE = "web"


def fixed_cost(box: Sandbox) -> Counter[str]:
    """What one worker start costs with nothing to do: boot, one empty poll, shutdown."""
    ns = box.namespace()
    box.storage(ns).ensure_containers()
    stats = box.root / "fixed.json"
    box.worker(ns, ROLE, "idle-0", "--once", "--stats-file", str(stats)).wait(120)
    return read_stats([stats])


def _table(title: str, counts: dict[str, Counter[str]], jobs: int) -> str:
    ops = sorted({op for c in counts.values() for op in c})
    cols = list(counts)
    rows = [f"| {title} | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for op in [*ops, "total"]:
        cells = []
        for c in cols:
            n = sum(counts[c].values()) if op == "total" else counts[c].get(op, 0)
            cells.append(f"{n} ({n / jobs:.3f}/job)")
        rows.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run(size: Size) -> Section:
    n = size.pick(500, 12)
    w = 2
    sec = Section("transactions", "2. Storage transactions per job")
    sec.context.update(jobs=str(n), workers=str(w), mode="one `--any` run per job")
    with sandbox("tx") as box:
        fixed = fixed_cost(box)
        ns = box.namespace()
        meter = Meter()
        st = box.storage(ns, meter)
        st.ensure_containers()
        register_instance(box.storage(ns), ROLE, "registrar", create_queue=False)
        script = box.root / "true.sh"
        script.write_bytes(TRUE_SH)

        # as the CLI does: the payload is checked for once, then remembered
        published = PublishedPayloads(None, st.blob_endpoint)
        for _ in range(n):
            req = RunRequest(role=ROLE, script=script, mode=RunMode.ANY)
            start_run(st, req, published=published)
        dispatch = Counter(meter.snapshot())
        meter.reset()

        stats = [box.root / f"stats-{i}.json" for i in range(w)]
        t0 = time.monotonic()
        procs = [
            box.worker(ns, ROLE, f"{ROLE}-{i}", "--once", "--stats-file", str(stats[i]))
            for i in range(w)
        ]
        for p in procs:
            p.wait(600)
        drained = time.monotonic() - t0
        worker = read_stats(stats)

        folded = EventFolder(st).fold_all()
        fold = Counter(meter.snapshot())
        if folded.completions != n:
            raise RuntimeError(f"folded {folded.completions} completions for {n} jobs")
        leftover = EventReader(box.storage(ns)).completions()
        if leftover:
            raise RuntimeError(f"{len(leftover)} completions were not folded")

    steady = worker.copy()
    for op, k in fixed.items():
        steady[op] -= w * k
    steady = Counter({op: k for op, k in steady.items() if k > 0})
    sec.tables.append(
        _table(
            "worker side",
            {"all W workers, all-in": worker, "fixed cost of 1 start": fixed, "at load": steady},
            n,
        )
    )
    sec.tables.append(
        _table("controller side", {"dispatch (start_run)": dispatch, "fold (EventFolder)": fold}, n)
    )
    total_worker = sum(worker.values())
    sec.add(
        "worker_at_load",
        "worker tx/job at load (fixed start cost excluded)",
        sum(steady.values()) / n,
        "tx/job",
        target=("<=", 1.15),
    )
    sec.add(
        "worker_all_in",
        f"worker tx/job all-in ({w} starts over {n} jobs)",
        total_worker / n,
        "tx/job",
    )
    sec.add(
        "worker_fixed",
        "worker fixed cost per start (boot + last poll + stop)",
        sum(fixed.values()),
        "tx",
    )
    sec.add(
        "controller_dispatch",
        "controller tx/job, dispatch (`run --any`)",
        sum(dispatch.values()) / n,
        "tx/job",
    )
    sec.add(
        "controller_fold",
        "controller tx/job, folding completions",
        sum(fold.values()) / n,
        "tx/job",
    )
    sec.add(
        "total",
        "total tx/job (worker at load + controller)",
        (sum(steady.values()) + sum(dispatch.values()) + sum(fold.values())) / n,
        "tx/job",
    )
    sec.context["drain seconds"] = f"{drained:.1f}"
    return sec
