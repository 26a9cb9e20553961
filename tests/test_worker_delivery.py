"""Delivery under failure: one-of-N, leases that outlive the visibility timeout, SIGKILL,
graceful shutdown. Real worker processes against a real Azurite."""

from __future__ import annotations

import signal

from rolecall.schemas import Outcome
from tests.fleet import Fleet, Ledger, Operator, wait_for


def test_a_role_job_served_by_three_workers_runs_exactly_once(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """Given three instances of a role, when one job lands on the role queue, it runs once."""
    for i in range(3):
        workers.worker("web", f"web-{i}")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("ran"))))
    wait_for(lambda: ops.completions("run1.any"), what="a completion")
    c = ops.completions("run1.any")
    assert [x.outcome for x in c] == [Outcome.SUCCEEDED]
    assert len(ledger.entries("ran")) == 1


def test_a_job_three_times_longer_than_its_lease_runs_once(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """The lease (visibility timeout, 4 s) is renewed while a 12 s job runs, so none of the
    two competing workers ever sees the message again."""
    for i in range(3):
        workers.worker("web", f"web-{i}")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("long", "sleep 12"))))
    wait_for(lambda: ops.completions("run1.any"), timeout=60, what="the long job to finish")
    assert len(ledger.entries("long")) == 1
    assert [c.outcome for c in ops.completions("run1.any")] == [Outcome.SUCCEEDED]


def test_a_worker_killed_mid_job_has_its_job_completed_elsewhere(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """SIGKILL mid-job: after the visibility timeout another instance claims and completes
    it; exactly one success is reported, by the survivor."""
    victim = workers.worker("web", "web-0")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("job", "sleep 3"))))
    wait_for(lambda: ledger.entries("job"), what="the job to start on web-0")
    victim.kill()
    workers.worker("web", "web-1")
    wait_for(lambda: ops.completions("run1.any"), timeout=40, what="a completion")
    (c,) = ops.completions("run1.any")
    assert (c.outcome, c.instance, c.attempt) == (Outcome.SUCCEEDED, "web-1", 2)
    assert [e[1] for e in ledger.entries("job")] == ["web-0", "web-1"]


def test_graceful_shutdown_mid_job_releases_the_lease_to_another_worker(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """SIGTERM: the job gets its grace period (2 s), is then killed and its message released
    at once (not after the 4 s lease), and another instance finishes it."""
    first = workers.worker("web", "web-0")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("job", "sleep 6"))))
    wait_for(lambda: ledger.entries("job"), what="the job to start")
    first.signal(signal.SIGTERM)
    assert first.wait(20) == 0
    assert ops.visible(ops.names.role_queue("web")) == 1, "released, visible at once"
    workers.worker("web", "web-1")
    wait_for(lambda: ops.completions("run1.any"), timeout=40, what="a completion")
    assert [(c.outcome, c.instance) for c in ops.completions("run1.any")] == [
        (Outcome.SUCCEEDED, "web-1")
    ]


def test_a_second_signal_kills_the_job_at_once(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    w = workers.worker("web", "web-0", "--grace", "60")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("job", "sleep 60"))))
    wait_for(lambda: ledger.entries("job"), what="the job to start")
    w.signal(signal.SIGTERM)
    # signals do not queue: wait until the first is seen before sending the second
    wait_for(lambda: "shutdown requested" in w.log(), what="the first signal to land")
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 4  # ExitCode.FORCED
    assert ops.visible(ops.names.role_queue("web")) == 1
