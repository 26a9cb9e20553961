"""Reading what instances report, from outside the controller (tests, benchmarks, the
simulator): every role's report blobs and the legacy events queue, decoded and taken away,
so a test can look at reports without folding them."""

from __future__ import annotations

from rolecall.schemas.codec import decode_message, report_text
from rolecall.schemas.errors import NotFound
from rolecall.schemas.events import EventBatch
from rolecall.storage.clients import Storage


def report_containers(storage: Storage) -> list[str]:
    names = storage.names
    found = storage.list_containers(names.results_prefix)
    return [c for c in found if names.role_key_of_results_container(c)]


def read_reports(storage: Storage, *, take: bool = True) -> list[EventBatch]:
    """Every report waiting, oldest first; ``take`` deletes what was read."""
    out: list[EventBatch] = []
    for container in report_containers(storage):
        try:
            items = storage.list_blobs(container, "", metadata=True)
        except NotFound:
            continue
        for item in items:
            body = (
                b"" if item.metadata.get("batch") else storage.get_blob(container, item.name).data
            )
            out.append(decode_message(report_text(body, item.metadata), EventBatch))
        if take and items:
            storage.delete_blobs(container, [i.name for i in items])
    out += _legacy(storage, take)
    return out


def _legacy(storage: Storage, take: bool) -> list[EventBatch]:
    out: list[EventBatch] = []
    queue = storage.names.events_queue
    try:
        msgs = storage.peek(queue, 32) if not take else None
    except NotFound:
        return out
    if msgs is not None:
        return [decode_message(m.content, EventBatch) for m in msgs]
    while True:
        try:
            got = storage.receive(queue, max_messages=32, visibility_s=30)
        except NotFound:
            return out
        if not got:
            return out
        for m in got:
            out.append(decode_message(m.content, EventBatch))
            storage.delete(m)
