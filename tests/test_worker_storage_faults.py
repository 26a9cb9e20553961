"""Storage trouble: the worker never dies of it, and never loses a completion to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from rolecall.devtools.azurite import Azurite, connection_string
from rolecall.devtools.faultproxy import FaultPlan, FaultProxy
from rolecall.schemas import Outcome
from tests.fleet import Fleet, Ledger, Operator, wait_for


@pytest.fixture
def proxied(azurite: Azurite, env: dict[str, str]) -> Iterator[FaultPlan]:
    """Workers reach Azurite through a proxy the test can turn against them."""
    plan = FaultPlan()
    with FaultProxy(azurite.blob_port, plan) as blob, FaultProxy(azurite.queue_port, plan) as queue:
        acct = azurite.blob_url.rsplit("/", 1)[1]
        env["AZURE_STORAGE_CONNECTION_STRING"] = connection_string(
            f"http://127.0.0.1:{blob.port}/{acct}", f"http://127.0.0.1:{queue.port}/{acct}"
        )
        yield plan


def test_completions_wait_out_an_events_outage_and_no_new_work_is_claimed(
    proxied: FaultPlan, ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """While the events queue refuses posts, the finished job's message is kept (not
    deleted) and nothing new is claimed; when posting works again the completion arrives
    once and the next job runs."""
    events = ops.names.results_container("web")  # where web-0 reports
    outage = threading.Event()
    proxied.blocked = lambda method, path: (
        outage.is_set() and method == "PUT" and f"/{events}/" in path
    )
    w = workers.worker("web", "web-0")
    wait_for(lambda: ops.hellos("web-0"), what="the worker to register")
    outage.set()
    ops.enqueue(ops.job("web", ops.publish(ledger.script("first")), job_id="first"))
    wait_for(lambda: ledger.entries("first"), what="the first job to run")
    wait_for(lambda: proxied.counts["blocked"] >= 3, what="posting to be refused a few times")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("second")), job_id="second"))
    wait_for(lambda: proxied.counts["blocked"] >= 8, what="more refused posts")
    assert ledger.entries("second") == [], "no new claims while a completion is owed"
    assert [type(e).__name__ for e in ops.drain_events()] == ["Hello"]
    assert w.alive
    outage.clear()
    wait_for(lambda: len(ops.completions()) == 2, timeout=60, what="both completions")
    assert {c.job_id: c.outcome for c in ops.completions()} == {
        "first": Outcome.SUCCEEDED,
        "second": Outcome.SUCCEEDED,
    }
    assert len(ledger.entries("first")) == 1, "not run again"


def test_a_refused_delete_is_retried_while_the_lease_holds(
    proxied: FaultPlan, ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """The job ran and its completion is posted, but the delete is refused for longer than
    one call's retries (storage restarting). The worker keeps the settlement and deletes the
    message when storage is back, well inside its lease: the message never reappears, so no
    other instance can run the job again. (Dropping the settlement would leave the message
    invisible until its 60 s lease ran out.)"""
    queue = ops.names.role_queue("web")
    outage = threading.Event()
    proxied.blocked = lambda method, path: (
        outage.is_set() and method == "DELETE" and f"/{queue}/messages/" in path
    )
    w = workers.worker("web", "web-0", "--lease", "60")
    wait_for(lambda: ops.hellos("web-0"), what="the worker to register")
    outage.set()
    ops.enqueue(ops.job("web", ops.publish(ledger.script("once")), job_id="once"))
    wait_for(lambda: ops.completions("once"), what="the completion")
    wait_for(lambda: proxied.counts["blocked"] >= 8, what="deletes refused past one call's retries")
    assert "will retry" in w.log()
    outage.clear()
    wait_for(lambda: ops.storage.approximate_count(queue) == 0, timeout=30, what="the delete")
    assert len(ledger.entries("once")) == 1
    assert "lease lost" not in w.log()
    assert w.alive


def test_a_delete_refused_past_its_lease_is_logged_as_lost_and_re_reported(
    proxied: FaultPlan, ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """Deletes refused until the (4 s) lease runs out: the worker logs the lost lease with
    the job id, the message comes back, and the same incarnation re-reports it from its
    marker instead of running the job again."""
    queue = ops.names.role_queue("web")
    outage = threading.Event()
    proxied.blocked = lambda method, path: (
        outage.is_set() and method == "DELETE" and f"/{queue}/messages/" in path
    )
    w = workers.worker("web", "web-0")
    wait_for(lambda: ops.hellos("web-0"), what="the worker to register")
    outage.set()
    ops.enqueue(ops.job("web", ops.publish(ledger.script("lapse")), job_id="lapse"))
    wait_for(lambda: "lease lost" in w.log() and '"job_id": "lapse"' in w.log(), timeout=60,
             what="the lapsed lease to be logged")  # fmt: skip
    outage.clear()
    wait_for(lambda: ops.storage.approximate_count(queue) == 0, timeout=60, what="the delete")
    assert len(ledger.entries("lapse")) == 1, "re-reported, not re-run"
    done = wait_for(lambda: ops.completions("lapse"), what="the completion")
    assert {c.outcome for c in done} == {Outcome.SUCCEEDED}
    assert w.alive


def test_the_worker_survives_storage_going_away_and_coming_back(
    proxied: FaultPlan, ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    proxied.blocked = lambda method, path: True
    w = workers.worker("web", "web-0")
    wait_for(lambda: proxied.counts["blocked"] >= 5, what="boot to hit the outage")
    assert w.alive
    proxied.blocked = None
    ops.enqueue(ops.job("web", ops.publish(ledger.script("after"))))
    wait_for(lambda: ops.completions("run1.any"), timeout=90, what="work after the outage")
    assert w.alive


def test_a_missing_instance_queue_does_not_starve_the_role_queue(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    w = workers.worker("web", "web-0")
    wait_for(lambda: ops.hellos("web-0"), what="registration")
    ops.storage.queue(ops.names.instance_queue("web-0")).delete_queue()
    ops.enqueue(ops.job("web", ops.publish(ledger.script("role-job"))))
    wait_for(lambda: ops.completions("run1.any"), what="the role queue job")
    assert "does not exist" in w.log() and w.alive
