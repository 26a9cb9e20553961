"""The thin storage layer against a real Azurite: leases, receipts, ETags, metering."""

from __future__ import annotations

import pytest

from rolecall.schemas.errors import AccessDenied, ConcurrencyConflict, LeaseLost, NotFound
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage


def test_receive_claims_a_batch_in_one_transaction(storage: Storage) -> None:
    q = storage.names.role_queue("web")
    storage.ensure_queue(q)
    for i in range(5):
        storage.send(q, f"m{i}")
    storage.meter.reset()
    got = storage.receive(q, max_messages=32, visibility_s=30)
    assert sorted(m.content for m in got) == [f"m{i}" for i in range(5)]
    assert storage.meter.snapshot() == {"queue.receive": 1}
    assert storage.receive(q, max_messages=32, visibility_s=30) == []  # all leased


def test_extending_a_lease_kills_the_old_pop_receipt(storage: Storage) -> None:
    q = storage.names.role_queue("web")
    storage.ensure_queue(q)
    storage.send(q, "x")
    (m,) = storage.receive(q, max_messages=1, visibility_s=30)
    renewed = storage.extend(m, 30)
    assert renewed.pop_receipt != m.pop_receipt
    with pytest.raises(LeaseLost):
        storage.extend(m, 30)
    with pytest.raises(LeaseLost):
        storage.delete(m)
    assert storage.delete(renewed) is True
    assert storage.delete(renewed) is False  # a retried delete is not an error


def test_released_message_is_redelivered_with_a_higher_dequeue_count(storage: Storage) -> None:
    q = storage.names.role_queue("web")
    storage.ensure_queue(q)
    storage.send(q, "x")
    (m,) = storage.receive(q, max_messages=1, visibility_s=30)
    storage.extend(m, 0)
    (again,) = storage.receive(q, max_messages=1, visibility_s=30)
    assert (m.dequeue_count, again.dequeue_count) == (1, 2)


def test_a_released_message_is_visible_at_once_and_its_receipt_dies(storage: Storage) -> None:
    q = storage.names.role_queue("web")
    storage.ensure_queue(q)
    storage.send(q, "x")
    (m,) = storage.receive(q, max_messages=1, visibility_s=300)
    storage.release(m)
    (again,) = storage.receive(q, max_messages=1, visibility_s=300)
    assert again.id == m.id
    with pytest.raises(LeaseLost):
        storage.release(m)  # the first claim's receipt died with the release


def test_etag_guarded_write_loses_a_race(storage: Storage) -> None:
    c = storage.names.state_container
    etag = storage.put_blob(c, "runs/r.json", b"{}")
    storage.put_blob(c, "runs/r.json", b"{1}", etag=etag)
    with pytest.raises(ConcurrencyConflict):
        storage.put_blob(c, "runs/r.json", b"{2}", etag=etag)
    with pytest.raises(ConcurrencyConflict):
        storage.put_blob(c, "runs/r.json", b"{3}", create_only=True)
    assert storage.get_blob(c, "runs/r.json").data == b"{1}"


def test_missing_blob_and_queue_are_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.get_blob(storage.names.state_container, "nope.json")
    assert storage.blob_size(storage.names.payloads_container, "sha256/nope") is None
    with pytest.raises(NotFound):
        storage.receive("t-no-such-queue", max_messages=1, visibility_s=1)


def test_list_with_metadata_is_one_call(storage: Storage) -> None:
    c = storage.names.state_container
    for i in range(3):
        storage.put_blob(c, f"instances/web/w{i}.json", b"{}", metadata={"n": str(i)})
    storage.meter.reset()
    items = storage.list_blobs(c, "instances/web/", metadata=True)
    assert [b.metadata["n"] for b in items] == ["0", "1", "2"]
    assert storage.meter.snapshot() == {"blob.list": 1}


def test_bad_account_key_is_access_denied(azurite, namespace: str) -> None:  # type: ignore[no-untyped-def]
    from rolecall.devtools.azurite import ACCOUNT_KEY

    bad = azurite.connection_string.replace(ACCOUNT_KEY, "AAAA" + ACCOUNT_KEY[4:])
    s = Storage(StorageSettings(connection_string=bad, namespace=namespace))
    s.ensure_queue(s.names.events_queue)  # may not create: assumed to exist, no error here
    with pytest.raises(AccessDenied) as e:
        s.send(s.names.events_queue, "x")
    assert ACCOUNT_KEY not in str(e.value)


def test_a_batch_delete_is_metered_as_azure_bills_it(storage: Storage) -> None:
    """One Blob Batch request of three deletes is four transactions on the bill: the batch
    and each delete in it. bench/scale.py and docs/scale.md count them the same way."""
    c = storage.names.state_container
    storage.ensure_containers()
    for i in range(3):
        storage.put_blob(c, f"gone/{i}", b"x")
    storage.meter.reset()
    storage.delete_blobs(c, [f"gone/{i}" for i in range(3)])
    assert storage.meter.snapshot() == {"blob.batch": 1, "blob.delete": 3}
    assert storage.list_blobs(c, "gone/") == []
