"""The life of one claimed message (worker/claim.py) against a real Azurite, and the one
policy that decides what happens after an attempt (worker/policy.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from rolecall.devtools.azurite import Azurite, connection_string
from rolecall.devtools.faultproxy import FaultPlan, FaultProxy
from rolecall.schemas import Outcome, PoisonRecord, decode_message, utcnow
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from rolecall.worker import policy
from rolecall.worker.claim import Ack, Claim, ClaimState, DeadLetter, Release, Retry


def claim_one(storage: Storage, queue: str, text: str = "job", lease_s: int = 30) -> Claim:
    storage.ensure_queue(queue)
    storage.send(queue, text)
    (msg,) = storage.receive(queue, max_messages=1, visibility_s=lease_s)
    return Claim(storage, msg, lease_s, time.monotonic())


def record(queue: str) -> PoisonRecord:
    return PoisonRecord(
        source_queue=queue, reason="malformed", error="not a job", original="job",
        poisoned_at=utcnow(),
    )  # fmt: skip


def test_a_claim_runs_then_acks_and_the_message_is_gone(storage: Storage) -> None:
    q = storage.names.role_queue("web")
    claim = claim_one(storage, q)
    assert claim.state is ClaimState.CLAIMED
    assert claim.start(margin_s=1)
    assert claim.state is ClaimState.RUNNING
    assert claim.renew() and claim.renewals == 1
    assert claim.settle(Ack())
    assert claim.state is ClaimState.SETTLED
    assert storage.approximate_count(q) == 0


def test_a_stale_pop_receipt_makes_the_claim_lost_and_nothing_is_deleted(
    storage: Storage,
) -> None:
    q = storage.names.role_queue("web")
    claim = claim_one(storage, q, lease_s=30)
    claim.start(margin_s=1)
    storage.extend(claim.msg, 30)  # someone else's update: our pop receipt is now dead
    assert claim.settle(Ack()), "nothing left to do for a lost claim"
    assert claim.state is ClaimState.LOST
    assert not claim.renew()
    assert storage.approximate_count(q) == 1


def test_retry_and_release_make_the_message_visible_again(storage: Storage) -> None:
    q = storage.names.role_queue("web")
    claim = claim_one(storage, q)
    claim.start(margin_s=1)
    assert claim.settle(Retry(0))
    assert claim.state is ClaimState.SETTLED
    again = claim_one(storage, storage.names.role_queue("api"))
    again.start(margin_s=1)
    assert again.settle(Release())
    assert len(storage.receive(q, max_messages=32, visibility_s=1)) == 1


def test_releasing_a_claim_that_already_ran_does_nothing(storage: Storage) -> None:
    """A long job lets go of the rest of its batch; a message that already ran belongs to
    the outbox until its completion is posted, so release() must not touch it."""
    q = storage.names.role_queue("web")
    claim = claim_one(storage, q)
    claim.start(margin_s=1)
    claim.release()
    assert claim.state is ClaimState.RUNNING
    assert storage.receive(q, max_messages=32, visibility_s=1) == []


def test_dead_letter_sends_the_record_then_deletes(storage: Storage) -> None:
    q = storage.names.role_queue("web")
    claim = claim_one(storage, q)
    claim.start(margin_s=1)
    assert claim.settle(DeadLetter(record(q)))
    assert claim.state is ClaimState.SETTLED
    assert storage.approximate_count(q) == 0
    (poisoned,) = storage.peek(storage.names.poison_queue(q))
    assert decode_message(poisoned.content, PoisonRecord).reason == "malformed"


@pytest.fixture
def proxied(azurite: Azurite, namespace: str) -> Iterator[tuple[Storage, FaultPlan]]:
    plan = FaultPlan()
    with FaultProxy(azurite.blob_port, plan) as blob, FaultProxy(azurite.queue_port, plan) as queue:
        acct = azurite.blob_url.rsplit("/", 1)[1]
        cs = connection_string(
            f"http://127.0.0.1:{blob.port}/{acct}", f"http://127.0.0.1:{queue.port}/{acct}"
        )
        s = Storage(StorageSettings(connection_string=cs, namespace=namespace))
        s.ensure_containers()
        yield s, plan
        s.close()


def test_a_dead_letter_whose_delete_failed_is_finished_without_a_second_record(
    proxied: tuple[Storage, FaultPlan],
) -> None:
    """Dead-lettering is a send and a delete. If the delete is refused after the send, the
    settlement is tried again while the lease holds, and the record is not sent twice."""
    storage, plan = proxied
    q = storage.names.role_queue("web")
    claim = claim_one(storage, q)
    claim.start(margin_s=1)
    plan.blocked = lambda method, path: method == "DELETE" and f"/{q}/messages/" in path
    assert not claim.settle(DeadLetter(record(q))), "storage refused: try again later"
    assert claim.state is ClaimState.SETTLING
    plan.blocked = None
    assert claim.settle(DeadLetter(record(q)))
    assert claim.state is ClaimState.SETTLED
    assert len(storage.peek(storage.names.poison_queue(q))) == 1
    assert storage.approximate_count(q) == 0


# --- the policy: pure ------------------------------------------------------------------------


def test_policy_acks_success_and_retries_failures_with_growing_delays() -> None:
    after = policy.after_attempt
    assert after(Outcome.SUCCEEDED, attempt=1, max_attempts=3, retry_delay_s=10) == Ack()
    assert after(Outcome.REBOOT_REQUIRED, attempt=3, max_attempts=3, retry_delay_s=10) == Ack()
    assert after(Outcome.FAILED, attempt=1, max_attempts=3, retry_delay_s=10) == Retry(10)
    assert after(Outcome.TIMED_OUT, attempt=2, max_attempts=3, retry_delay_s=10) == Retry(20)
    assert policy.retry_delay(12, 10) == policy.MAX_RETRY_DELAY_S


def test_policy_gives_up_on_the_last_attempt_and_releases_what_the_agent_stopped() -> None:
    last = policy.after_attempt(Outcome.FAILED, attempt=3, max_attempts=3, retry_delay_s=10)
    assert isinstance(last, policy.GiveUp)
    assert (last.reason, last.outcome) == ("failed", Outcome.FAILED)
    assert policy.after_attempt(None, attempt=3, max_attempts=3, retry_delay_s=10) == Release()


def test_policy_refuses_before_running_when_attempts_died_or_the_deadline_passed() -> None:
    now = utcnow()
    before = policy.before_attempt
    assert before(attempt=3, max_attempts=3, not_after=None, now=now) is None
    died = before(attempt=4, max_attempts=3, not_after=None, now=now)
    assert died is not None and died.reason == "attempts_exhausted"
    late = before(attempt=1, max_attempts=3, not_after=now - timedelta(seconds=1), now=now)
    assert late is not None and (late.reason, late.outcome) == ("expired", Outcome.EXPIRED)
