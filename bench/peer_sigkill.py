"""Benchmark 7 (issue #5): SIGKILL mid-run, rolecall against Celery on kombu's Azure Storage
Queues transport, on the same Azurite.

N jobs each write ``start <id>`` to a ledger, sleep, then write ``done <id>``. One consumer
(one rolecall worker; one Celery worker with a pool of one) runs them; when half are done the
consumer's whole process group is SIGKILLed (an instance lost mid-job: agent and running job
die together), then it is started again and left until nothing more happens. A job is lost if
it never wrote ``done``.

Why the two differ: rolecall claims a message with a visibility timeout and deletes it only
after the job's completion is posted, so a claim that dies with its holder reappears when the
lease runs out. kombu's transport deletes each message right after receiving it (its
``Channel._get``); from then on the message lives only in the worker's memory, prefetched or
running. ``task_acks_late`` only delays kombu's in-memory ack, which a SIGKILL never reaches.

The rolecall worker runs with ``--lease 10`` (default 60) so its recovery takes seconds, not a
minute; that changes when, not whether, the claim comes back.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.core import Processes, Sandbox, Section, Size, sandbox
from bench.peer import CeleryPeer
from bench.rc import enqueue_role_jobs, publish
from rolecall.devtools.waiting import wait_for

ROLE = "victim"
LEASE_S = 10


@dataclass
class Outcome:
    system: str
    variant: str
    jobs: int
    done: int
    lost: int
    reran: int
    recovery_s: float

    def row(self) -> str:
        return (
            f"| {self.system} | {self.variant} | {self.jobs} | {self.done} | {self.lost} | "
            f"{self.reran} | {self.recovery_s:.1f} |"
        )


def _ledger(path: Path, tag: str) -> Counter[str]:
    words = [ln.split() for ln in path.read_text().splitlines()]
    return Counter(w[1] for w in words if len(w) == 2 and w[0] == tag)


def settle(
    progress: Callable[[], int], empty: Callable[[], bool], quiet_s: float, timeout: float
) -> float:
    """Wait until nothing is left to do: the queue empty and no progress for ``quiet_s``.
    Returns the time of the last progress, relative to the call."""
    t0 = time.monotonic()
    last, changed = progress(), time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.2)
        now = progress()
        if now != last:
            last, changed = now, time.monotonic()
        elif empty() and time.monotonic() - changed >= quiet_s:
            break
    return changed - t0


def rolecall_case(box: Sandbox, n: int, sleep_s: float) -> Outcome:
    ns = box.namespace()
    st = box.storage(ns)
    ledger = box.root / "rolecall-ledger.txt"
    ledger.touch()
    body = (
        f'#!/bin/sh\necho "start $ROLECALL_JOB_ID" >> "{ledger}"\nsleep {sleep_s}\n'
        f'echo "done $ROLECALL_JOB_ID" >> "{ledger}"\n'
    )
    enqueue_role_jobs(st, ROLE, publish(st, body.encode(), "job.sh"), n, run_id="kill")
    args = ("--lease", str(LEASE_S), "--log-level", "warning")
    worker = box.worker(ns, ROLE, f"{ROLE}-0", *args)
    wait_for(lambda: len(_ledger(ledger, "done")) >= n // 2, 120, 0.02, "half the jobs")
    Processes.kill(worker)
    worker = box.worker(ns, ROLE, f"{ROLE}-0", *args)  # the same disk: a reboot
    queue = st.names.role_queue(ROLE)
    recovery = settle(
        lambda: len(_ledger(ledger, "done")),
        lambda: st.approximate_count(queue) == 0,
        quiet_s=3,
        timeout=LEASE_S + n * sleep_s + 90,
    )
    box.procs.stop(worker)
    return _outcome("rolecall", f"defaults, --lease {LEASE_S}", n, ledger, recovery)


def celery_case(box: Sandbox, n: int, sleep_s: float, acks_late: bool) -> Outcome:
    peer = CeleryPeer(box, "kill-late" if acks_late else "kill", acks_late=acks_late)
    peer.send("bench.sleepy", [[i, sleep_s] for i in range(n)])
    worker = peer.start_worker(1, "a")
    wait_for(lambda: peer.count("done") >= n // 2, 120, 0.02, "half the tasks")
    Processes.kill(worker)
    worker = peer.start_worker(1, "b")
    st = box.storage("unused")
    recovery = settle(
        lambda: peer.count("done"),
        lambda: st.approximate_count(peer.queue) == 0,
        quiet_s=3,
        timeout=n * sleep_s + 90,
    )
    box.procs.stop(worker)
    variant = "task_acks_late + reject_on_worker_lost" if acks_late else "defaults"
    return _outcome("Celery", variant, n, peer.ledger, recovery)


def _outcome(system: str, variant: str, n: int, ledger: Path, recovery: float) -> Outcome:
    done, started = _ledger(ledger, "done"), _ledger(ledger, "start")
    reran = sum(1 for k in started if started[k] > 1)
    return Outcome(system, variant, n, len(done), n - len(done), reran, recovery)


def run(size: Size) -> Section:
    n = size.pick(20, 6)
    sleep_s = size.pick(0.5, 0.3)
    sec = Section("sigkill", "7. SIGKILL mid-run: rolecall vs Celery on azurestoragequeues")
    sec.context.update(jobs=str(n), job=f"writes start, sleeps {sleep_s:g} s, writes done",
                       consumer="1 rolecall worker / 1 Celery worker, pool of 1")  # fmt: skip
    with sandbox("sigkill") as box:
        results = [
            rolecall_case(box, n, sleep_s),
            celery_case(box, n, sleep_s, acks_late=False),
            celery_case(box, n, sleep_s, acks_late=True),
        ]
    sec.tables.append(
        "| system | settings | jobs | completed | lost | re-run after the kill | "
        "recovery (s) |\n|---|---|---:|---:|---:|---:|---:|\n" + "\n".join(r.row() for r in results)
    )
    rc, celery, late = results
    sec.add("rolecall_lost", "rolecall: jobs lost", rc.lost, "jobs", target=("<=", 0))
    sec.add("rolecall_reran", "rolecall: jobs run again (the one killed mid-run)", rc.reran, "jobs")
    sec.add("celery_lost", "Celery defaults: jobs lost", celery.lost, "jobs")
    sec.add("celery_acks_late_lost", "Celery acks_late: jobs lost", late.lost, "jobs")
    return sec
