"""Sweeping a queue from outside (cancel, poison requeue/purge): every message is judged once,
the chosen ones are deleted, and the rest are back for workers at once."""

from __future__ import annotations

from collections import Counter

import pytest

from rolecall.schemas.errors import ContractError
from rolecall.storage.clients import Message, Storage
from rolecall.storage.sweep import sweep


def filled(storage: Storage, n: int) -> str:
    q = storage.names.role_queue("web")
    storage.ensure_queue(q)
    for i in range(n):
        storage.send(q, str(i))
    return q


def visible_now(storage: Storage, q: str) -> list[Message]:
    """Everything claimable right now (claims it, for 5 minutes)."""
    out: list[Message] = []
    while batch := storage.receive(q, max_messages=32, visibility_s=300):
        out += batch
    return out


def test_a_sweep_acts_once_per_message_and_releases_the_rest(storage: Storage) -> None:
    q = filled(storage, 40)  # more than one receive can claim
    judged: Counter[str] = Counter()

    def even(m: Message) -> bool:
        judged[m.content] += 1
        return int(m.content) % 2 == 0

    assert sweep(storage, q, even, visibility_s=300) == 20
    assert judged == Counter(str(i) for i in range(40)), "each message judged exactly once"
    left = visible_now(storage, q)  # released, so no wait for their 5-minute claims to lapse
    assert sorted(int(m.content) for m in left) == list(range(1, 40, 2))
    assert {m.dequeue_count for m in left} == {2}


def test_a_sweep_that_fails_gives_back_everything_it_still_holds(storage: Storage) -> None:
    q = filled(storage, 5)
    seen: list[str] = []

    def delete_two_then_fail(m: Message) -> bool:
        seen.append(m.content)
        if len(seen) == 3:
            raise ContractError("cannot requeue a truncated message")
        return True

    with pytest.raises(ContractError):
        sweep(storage, q, delete_two_then_fail, visibility_s=300)
    left = {m.content for m in visible_now(storage, q)}
    assert left == {str(i) for i in range(5)} - set(seen[:2])
