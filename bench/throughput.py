"""Benchmark 1: jobs per second on one role queue, rolecall against the bare SDK and Celery.

N trivial jobs (one shared ``true``-like sh payload) are enqueued before any consumer starts;
then W consumer processes start and the clock runs from their start to the moment the last one
exits (rolecall with ``--once`` and the bare loop exit when a claim comes back empty, so that is
just after the last completion is posted) or, for Celery's long-running worker, to the last
task's ledger line. Process start-up is inside the measurement for all three.

Every run gets a fresh Azurite: its in-memory store slows as messages accumulate, and the
order of runs must not decide the ratios. The CPU each run used (consumers with their
children, and Azurite) is recorded too: on a 2-core machine it is what sets the pace.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import (
    TRUE_SH,
    CpuSpan,
    Sandbox,
    Section,
    Size,
    ratio,
    sandbox,
    send_many,
)
from bench.peer import REPO, CeleryPeer
from bench.rc import EventReader, enqueue_role_jobs, publish, read_stats
from rolecall.devtools.waiting import wait_for

ROLE = "web"
BARE_MODES = ("floor", "exec")


@dataclass
class Run:
    system: str
    workers: int
    jobs: int
    seconds: float
    tx: Counter[str] = field(default_factory=Counter)
    metered: bool = True
    cpu: tuple[float, float] = (0.0, 0.0)  # consumers' and Azurite's CPU seconds

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def tx_per_job(self) -> float | None:
        return sum(self.tx.values()) / self.jobs if self.metered and self.jobs else None


Boxes = Callable[[str], AbstractContextManager[Sandbox]]


def run_rolecall(boxes: Boxes, n: int, w: int, timeout: float) -> Run:
    with boxes(f"tp-rc{w}") as box:
        ns = box.namespace()
        st = box.storage(ns)
        ids = enqueue_role_jobs(st, ROLE, publish(st, TRUE_SH, "true.sh"), n)
        stats = [box.root / f"stats-{ns}-{i}.json" for i in range(w)]
        cpu = CpuSpan(box.az.pid)
        t0 = time.monotonic()
        procs = [
            box.worker(ns, ROLE, f"{ROLE}-{i}", "--once", "--stats-file", str(stats[i]))
            for i in range(w)
        ]
        for p in procs:
            p.wait(timeout)
        seconds = time.monotonic() - t0
        used = cpu.stop()
        done = {c.job_id for c in EventReader(st).completions() if c.outcome.ok}
        if done != set(ids):
            raise RuntimeError(f"rolecall completed {len(done)} of {n} jobs")
        return Run("rolecall", w, n, seconds, read_stats(stats), cpu=used)


def run_bare(boxes: Boxes, n: int, w: int, mode: str, timeout: float) -> Run:
    with boxes(f"tp-bare-{mode}{w}") as box:
        ns = box.namespace()
        st = box.storage(ns)
        ref = publish(st, TRUE_SH, "true.sh")
        enqueue_role_jobs(st, ROLE, ref, n)
        stats = [box.root / f"bare-{ns}-{i}.json" for i in range(w)]
        args = [
            sys.executable,
            "-m",
            "bench.bare_loop",
            "--mode",
            mode,
            "--queue",
            st.names.role_queue(ROLE),
            "--events",
            st.names.events_queue,
            "--container",
            ref.container,
            "--blob",
            ref.blob,
        ]
        cpu = CpuSpan(box.az.pid)
        t0 = time.monotonic()
        procs = [
            box.procs.start(
                [*args, "--stats", str(stats[i])],
                env=box.env(ns),
                log=box.root / "logs" / f"bare-{i}.log",
                cwd=REPO,
            )
            for i in range(w)
        ]
        for p in procs:
            p.wait(timeout)
        seconds = time.monotonic() - t0
        used = cpu.stop()
        tx: Counter[str] = Counter()
        jobs = 0
        for s in stats:
            data = json.loads(s.read_text())
            jobs += data["jobs"]
            tx.update(data["tx"])
        if jobs != n:
            raise RuntimeError(f"bare loop ({mode}) handled {jobs} of {n} jobs")
        return Run(f"bare-{mode}", w, n, seconds, tx, cpu=used)


def run_celery(boxes: Boxes, n: int, w: int, timeout: float) -> Run:
    with boxes(f"tp-celery{w}") as box:
        peer = CeleryPeer(box, "tp")
        peer.send("bench.noop", [[i] for i in range(n)])
        cpu = CpuSpan(box.az.pid)
        t0 = time.monotonic()
        proc = peer.start_worker(w)
        wait_for(lambda: peer.count() >= n, timeout, 0.02, "Celery to run every task")
        seconds = time.monotonic() - t0
        box.procs.stop(proc)  # waited for: its CPU (and its pool's) is counted
        used = cpu.stop()
        tx = _celery_tx(box, peer)
        if len(set(peer.lines("done"))) != n:
            raise RuntimeError(f"Celery ran {peer.count()} task lines for {n} tasks")
        return Run("celery", w, n, seconds, tx, metered=bool(tx), cpu=used)


def _celery_tx(box: Sandbox, peer: CeleryPeer) -> Counter[str]:
    path = Path(str(peer.ledger) + ".tx.json")
    return Counter(json.loads(path.read_text())) if path.exists() else Counter()


def azurite_probe(depth: int) -> dict[str, float]:
    """What one storage call costs here, with a shallow and a deep queue: the ceiling every
    system in this benchmark shares (Azurite's in-memory queues slow down as they fill)."""
    out: dict[str, float] = {}
    with sandbox("tp-probe") as box:
        st = box.storage(box.namespace())
        for label, n in (("shallow", 64), ("deep", depth)):
            q = f"{st.names.namespace}-{label}"
            send_many(st, q, ["x" * 900] * n)
            msgs = st.receive(q, max_messages=32, visibility_s=60)
            t, c = time.monotonic(), time.process_time()
            for m in msgs:
                st.delete(m)
            out[f"{label} delete ms"] = (time.monotonic() - t) / len(msgs) * 1000
            out[f"{label} client cpu ms"] = (time.process_time() - c) / len(msgs) * 1000
    return out


def run(size: Size) -> Section:
    n = size.pick(2000, 40)
    timeout = size.pick(900.0, 120.0)
    sec = Section("throughput", "1. Throughput: pre-enqueued trivial jobs on one role queue")
    sec.context["jobs"] = f"{n}, enqueued before the consumers start"
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        # full size: a fresh Azurite per run; tiny: one shared (fairness needs no toy runs)
        shared = stack.enter_context(sandbox("tp")) if size.tiny else None

        def boxes(name: str) -> AbstractContextManager[Sandbox]:
            return contextlib.nullcontext(shared) if shared is not None else sandbox(name)

        for w in (1, 4):
            runs.append(run_rolecall(boxes, n, w, timeout))
            for mode in BARE_MODES:
                runs.append(run_bare(boxes, n, w, mode, timeout))
            runs.append(run_celery(boxes, n, w, timeout))
    probe = azurite_probe(n)

    def rate(system: str, w: int) -> float | None:
        return next((r.rate for r in runs if r.system == system and r.workers == w), None)

    rows = ["| system | W | jobs | seconds | jobs/s | ms/job | tx/job | consumer CPU ms/job "
            "| Azurite CPU ms/job | cores busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in runs:
        tpj = "n/a" if r.tx_per_job is None else f"{r.tx_per_job:.3f}"
        rows.append(f"| {r.system} | {r.workers} | {r.jobs} | {r.seconds:.2f} | {r.rate:.1f} | "
                    f"{1000 / r.rate:.1f} | {tpj} | {r.cpu[0] / r.jobs * 1000:.1f} | "
                    f"{r.cpu[1] / r.jobs * 1000:.1f} | {sum(r.cpu) / r.seconds:.2f} |")  # fmt: skip
    sec.tables.append("\n".join(rows))
    sec.tables.append(
        "Azurite probe (one client, 32 deletes): "
        + ", ".join(f"{k} {v:.1f}" for k, v in probe.items())
    )
    for w in (1, 4):
        rc = rate("rolecall", w)
        sec.add(f"rolecall_w{w}", f"rolecall, W={w}", rc, "jobs/s")
        for mode in BARE_MODES:
            if rate(f"bare-{mode}", w) is not None:
                sec.add(f"bare_{mode}_w{w}", f"bare SDK loop ({mode}), W={w}",
                        rate(f"bare-{mode}", w), "jobs/s")  # fmt: skip
        sec.add(f"celery_w{w}", f"Celery (kombu azurestoragequeues), W={w}", rate("celery", w),
                "jobs/s")  # fmt: skip
        sec.add(f"vs_bare_w{w}", f"rolecall / bare loop (floor), W={w}",
                ratio(rc, rate("bare-floor", w)), "x", target=(">=", 0.9))  # fmt: skip
        sec.add(f"vs_bare_exec_w{w}", f"rolecall / bare loop + exec, W={w}",
                ratio(rc, rate("bare-exec", w)), "x")  # fmt: skip
        sec.add(f"vs_celery_w{w}", f"rolecall / Celery, W={w}",
                ratio(rc, rate("celery", w)), "x", target=(">=", 3.0))  # fmt: skip
    sec.notes += explain(runs)
    return sec


def explain(runs: list[Run]) -> list[str]:
    """Where the time goes, from the runs themselves (ms per job = 1000 / jobs/s)."""
    ms = {(r.system, r.workers): 1000 / r.rate for r in runs}
    cpu = {(r.system, r.workers): r.cpu[0] / r.jobs * 1000 for r in runs}
    notes = [
        "cores busy = (consumers' + Azurite's CPU seconds) / wall seconds; the machine has "
        f"{os.cpu_count()}. Consumer CPU includes the children they waited for (rolecall's "
        "and the exec loop's `sh` jobs, Celery's pool)."
    ]
    for w in (1, 4):
        floor, exe, rc = ms[("bare-floor", w)], ms[("bare-exec", w)], ms[("rolecall", w)]
        notes.append(
            f"W={w}: the bare floor takes {floor:.1f} ms a job; running the payload as a child "
            f"process makes it {exe:.1f} ms; rolecall takes {rc:.1f} ms. Consumer CPU: "
            f"rolecall {cpu[('rolecall', w)]:.1f} ms a job, bare + exec "
            f"{cpu[('bare-exec', w)]:.1f} ms."
        )
    notes.append(
        "rolecall's extra consumer CPU is its own per-job work (decoding and checking the "
        "envelope, the job's work directory and output files, its marker, its completion, "
        "JSON log lines) plus its process start and the empty receive on the instance queue "
        "before each claim of the role queue. It buys that back in wall time by deleting a "
        "batch's messages on a small thread pool while the next batch runs (after their "
        "completions are posted); the bare loops delete one after another."
    )
    az = [r.cpu[1] / r.jobs * 1000 for r in runs if r.system == "rolecall" and r.workers == 1]
    if az and az[0] > 0:
        notes.append(
            f"Azurite is one Node.js process: at {az[0]:.1f} ms of its CPU a job (rolecall, "
            f"W=1) it could serve at most about {1000 / az[0]:.0f} jobs/s, whoever asks: "
            "the ceiling for every system measured here."
        )
    notes.append(
        "The exec per job stays whatever else changes: a job is a child process. Where the "
        "cores are busy (the cores-busy column against the machine's count), more workers "
        "only share them; elsewhere W workers add up."
    )
    celery = [r for r in runs if r.system == "celery"]
    if celery and celery[0].tx_per_job is not None:
        notes.append(
            f"Celery makes {celery[0].tx_per_job:.2f} storage calls a task (kombu's transport "
            "receives one message per request and deletes it at once), one after another in "
            "the worker's single consumer; its prefork pool runs tasks in-process, with no "
            "exec per task."
        )
    return notes
