"""Bad input and failing jobs: each is poisoned with its reason, and nothing else stops."""

from __future__ import annotations

import os

import pytest

from rolecall.schemas import Outcome
from tests.fleet import Fleet, Ledger, Operator, wait_for
from tests.hostile import CASES, DECODE_CASES


@pytest.fixture
def small_caps(env: dict[str, str]) -> None:
    env["ROLECALL_EXTRACT_MAX_BYTES"] = str(1_000_000)
    env["ROLECALL_PAYLOAD_MAX_BYTES"] = str(500_000)
    env["ROLECALL_EXTRACT_MAX_MEMBERS"] = str(1_000)


def test_every_hostile_message_is_poisoned_and_good_work_behind_them_completes(
    ops: Operator, ledger: Ledger, workers: Fleet, small_caps: None
) -> None:
    queue = ops.names.role_queue("web")
    for case in CASES:
        ops.send_raw(queue, case.make(ops))
    ops.enqueue(ops.job("web", ops.publish(ledger.script("good")), job_id="good"))
    w = workers.worker("web", "web-0")
    wait_for(lambda: ops.completions("good"), timeout=60, what="the good job")
    wait_for(lambda: len(ops.poison(queue)) == len(CASES), timeout=30, what="all poisoned")
    got = sorted((p.reason, p.error) for p in ops.poison(queue))
    assert [r for r, _ in got] == sorted(c.reason for c in CASES), got
    for p in ops.poison(queue):
        assert p.error and p.instance == "web-0"
    assert w.alive, "the worker keeps running"
    assert not (ledger.path.parent / "escape.sh").exists()
    assert ops.visible(queue) == 0


def test_hostile_messages_between_good_jobs_are_poisoned_at_first_claim_and_workers_stay_live(
    ops: Operator, ledger: Ledger, workers: Fleet, small_caps: None
) -> None:
    """Issue 15, finding 7: JSON nested past the parser's recursion, tar members in conflict
    (``a`` then ``a/b``), paths too deep, too many members, a NUL in an argument. Each once
    raised past the poison path (RecursionError, a bare OSError, ValueError): the message
    came back after every lease and was never poisoned. Now each is poisoned with its reason
    at its first claim, and the good jobs sent around them all complete."""
    queue = ops.names.role_queue("web")
    good = ops.publish(ledger.script("good"))
    for i, case in enumerate(DECODE_CASES):
        ops.enqueue(ops.job("web", good, run_id=f"good{i}", job_id=f"good-{i}"))
        ops.send_raw(queue, case.make(ops))
    ops.enqueue(ops.job("web", good, run_id="goodN", job_id="good-last"))
    fleet = [workers.worker("web", "web-0"), workers.worker("web", "web-1")]
    goods = [f"good-{i}" for i in range(len(DECODE_CASES))] + ["good-last"]
    wait_for(
        lambda: all(ops.completions(g, outcome=Outcome.SUCCEEDED) for g in goods),
        timeout=90, what="every good job",
    )  # fmt: skip
    wait_for(lambda: len(ops.poison(queue)) == len(DECODE_CASES), timeout=30, what="poisoned")
    records = ops.poison(queue)
    assert sorted(p.reason for p in records) == sorted(c.reason for c in DECODE_CASES), [
        (p.reason, p.error) for p in records
    ]
    assert all(p.error for p in records)
    assert [p.dequeue_count for p in records] == [1] * len(records), "poisoned at first claim"
    assert len(ledger.entries("good")) == len(goods)
    assert ops.visible(queue) == 0
    for w in fleet:
        assert w.alive, "the worker keeps running"
        assert "unexpected error" not in w.log()


def test_a_failing_job_is_retried_then_poisoned_with_its_reason(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str]
) -> None:
    env["ROLECALL_RETRY_DELAY_S"] = "0"
    workers.worker("web", "web-0")
    script = ledger.script("try", 'echo "disk full" >&2; exit 3')
    ops.enqueue(ops.job("web", ops.publish(script), max_attempts=3))
    queue = ops.names.role_queue("web")
    wait_for(lambda: ops.poison(queue), timeout=40, what="the poison record")
    (record,) = ops.poison(queue)
    assert record.reason == "failed" and "3 of 3" in record.error
    assert "disk full" in record.last_output
    assert len(ledger.entries("try")) == 3
    outcomes = [(c.attempt, c.outcome, c.will_retry) for c in ops.completions("run1.any")]
    assert sorted(outcomes) == [
        (1, Outcome.FAILED, True),
        (2, Outcome.FAILED, True),
        (3, Outcome.FAILED, False),
    ]


def test_a_timeout_kills_the_whole_process_group(
    ops: Operator, ledger: Ledger, workers: Fleet, tmp_path: os.PathLike[str]
) -> None:
    """The script starts a sleeping grandchild; on timeout both die."""
    pidfile = ledger.path.parent / "grandchild.pid"
    body = f'sleep 300 & echo $! > "{pidfile}"; sleep 300'
    workers.worker("web", "web-0")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("t", body)), timeout_s=1, max_attempts=1))
    wait_for(lambda: ops.completions("run1.any"), timeout=30, what="the timeout")
    (c,) = ops.completions("run1.any")
    assert c.outcome is Outcome.TIMED_OUT and c.exit_code is None
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not _alive(grandchild), timeout=10, what="the grandchild to die")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_an_expired_job_is_refused_not_run(ops: Operator, ledger: Ledger, workers: Fleet) -> None:
    from tests.fleet import in_the_past

    ops.enqueue(ops.job("web", ops.publish(ledger.script("late")), not_after=in_the_past()))
    workers.worker("web", "web-0")
    wait_for(lambda: ops.completions("run1.any"), what="the expired completion")
    assert [c.outcome for c in ops.completions("run1.any")] == [Outcome.EXPIRED]
    assert ledger.entries("late") == []
    wait_for(lambda: ops.poison(ops.names.role_queue("web")), what="the audit record")
    assert [p.reason for p in ops.poison(ops.names.role_queue("web"))] == ["expired"]
