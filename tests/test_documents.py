"""ETag-guarded read-modify-write of a document, against a real Azurite, with a rival writer
that lands its writes between our read and our write."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rolecall.schemas.codec import encode_document
from rolecall.schemas.errors import ConcurrencyConflict
from rolecall.schemas.records import InstanceHistory
from rolecall.storage.clients import Storage
from rolecall.storage.documents import read_document, update_document

PATH = "history/web/web-0.json"
BOOT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def seen(history: InstanceHistory | None, *incarnations: str) -> InstanceHistory:
    if history is None:
        history = InstanceHistory(role="web", instance="web-0")
    for inc in incarnations:
        history = history.with_hello(inc, BOOT, "1.0")
    return history


def stored(storage: Storage) -> InstanceHistory:
    found = read_document(storage, storage.names.state_container, PATH, InstanceHistory)
    assert found is not None
    return found[0]


def test_a_change_creates_then_updates_and_an_unchanged_document_is_not_rewritten(
    storage: Storage,
) -> None:
    c = storage.names.state_container

    def add(inc: str) -> InstanceHistory:
        return update_document(storage, c, PATH, InstanceHistory, lambda h: seen(h, inc))

    add("a")
    add("b")
    etag = storage.get_blob(c, PATH).etag
    assert [i.incarnation for i in add("b").incarnations] == ["a", "b"]
    assert storage.get_blob(c, PATH).etag == etag, "a change that changes nothing writes nothing"


def test_a_lost_race_reapplies_the_change_to_the_winners_version(storage: Storage) -> None:
    c = storage.names.state_container
    update_document(storage, c, PATH, InstanceHistory, lambda h: seen(h, "a"))
    applied_to: list[list[str]] = []

    def add_b(history: InstanceHistory | None) -> InstanceHistory:
        assert history is not None
        applied_to.append([i.incarnation for i in history.incarnations])
        if len(applied_to) == 1:  # a rival writes between our read and our write
            storage.put_blob(c, PATH, encode_document(seen(history, "rival")))
        return seen(history, "b")

    update_document(storage, c, PATH, InstanceHistory, add_b)
    assert applied_to == [["a"], ["a", "rival"]]
    assert [i.incarnation for i in stored(storage).incarnations] == ["a", "rival", "b"]


def test_a_writer_that_keeps_losing_raises_and_leaves_the_winners_document(
    storage: Storage,
) -> None:
    c = storage.names.state_container
    update_document(storage, c, PATH, InstanceHistory, lambda h: seen(h, "a"))
    rival_writes: list[str] = []
    wanted: list[object] = []

    def add_b(history: InstanceHistory | None) -> InstanceHistory:
        rival = f"rival-{len(rival_writes)}"
        storage.put_blob(c, PATH, encode_document(seen(history, rival)))
        rival_writes.append(rival)
        return seen(history, "b")

    with pytest.raises(ConcurrencyConflict) as e:
        update_document(
            storage,
            c,
            PATH,
            InstanceHistory,
            add_b,
            before_write=lambda old, new: wanted.append(new),
            attempts=3,
            gave_up="history of web-0 kept changing",
        )
    assert str(e.value) == "history of web-0 kept changing"
    assert len(rival_writes) == len(wanted) == 3, "three attempts, each read afresh"
    assert [i.incarnation for i in stored(storage).incarnations] == ["a", *rival_writes]


def test_a_document_created_by_a_rival_first_is_updated_not_overwritten(
    storage: Storage,
) -> None:
    c = storage.names.state_container

    def add_b(history: InstanceHistory | None) -> InstanceHistory:
        if history is None:  # a rival creates it between our read and our create-only write
            storage.put_blob(c, PATH, encode_document(seen(None, "rival")), create_only=True)
        return seen(history, "b")

    update_document(storage, c, PATH, InstanceHistory, add_b)
    assert [i.incarnation for i in stored(storage).incarnations] == ["rival", "b"]
