"""Sending a wave of job messages: threads for a few hundred, processes for thousands.

The SDK spends about 1.3 ms of CPU on each send (its pipeline, requests, the XML), so one
Python process tops out near 600 sends a second however many threads it runs: the GIL
serialises them. A wave of 10,000 targets is therefore split over worker processes, each
with its own clients and a few threads to hide latency. Waves are sent in order and the
caller is told how many *leading* messages went out, because dispatch records a cursor: a
message after a failed one may have gone out too, and is sent again next time (job ids are
deterministic, so the instance's marker turns that into a re-report).

Each message is sealed (its ``sent_at`` stamped, then signed: ``Stamp``) by the thread or
process that sends it, just before its request: workers refuse a job whose stamp is far from
the queue's insertion time, so a wave must never be stamped ahead of the time it goes out.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any

from rolecall.controller.signing import Stamp
from rolecall.schemas.errors import NotFound, RolecallError
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage

log = logging.getLogger(__name__)

#: (queue, the job in its JSON form, unsealed; create the queue if it is missing)
Outgoing = tuple[str, dict[str, Any], bool]

#: below this many messages, threads in this process; above, processes too
PROCESS_THRESHOLD = 2000
CHUNK = 500
THREADS = 16
#: how often a long wave renews its dispatch lock (which lapses after 30 s)
RENEW_EVERY_S = 10.0

_child: tuple[Storage, Stamp] | None = None


def send_wave(
    storage: Storage,
    items: Sequence[Outgoing],
    stamp: Stamp,
    renew: Callable[[], None] = lambda: None,
) -> int:
    """Send ``items`` in order, each sealed by ``stamp`` as it goes; return how many leading
    ones were sent for sure. A message too large for the queue raises before any is sent."""
    if items:
        stamp(items[0][1])  # the messages of a wave differ only in ids: one size check
    if len(items) <= PROCESS_THRESHOLD or (os.cpu_count() or 1) < 2:
        return _leading(_send_threads(storage, items, stamp, renew))
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    workers = min(os.cpu_count() or 2, 8, len(chunks))
    done: list[list[bool]] = []
    last = time.monotonic()
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_start_child,
        initargs=(storage.settings, stamp),
    ) as pool:  # fmt: skip
        for result in pool.map(_send_chunk, chunks):
            done.append(result)
            if time.monotonic() - last >= RENEW_EVERY_S:
                renew()
                last = time.monotonic()
    return _leading([ok for chunk in done for ok in chunk])


def _send_threads(
    storage: Storage, items: Sequence[Outgoing], stamp: Stamp, renew: Callable[[], None]
) -> list[bool]:
    if len(items) <= 2:
        return [_send_one(storage, stamp, item) for item in items]
    results: list[bool] = []
    last = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for i in range(0, len(items), CHUNK):
            results += pool.map(lambda it: _send_one(storage, stamp, it), items[i : i + CHUNK])
            if time.monotonic() - last >= RENEW_EVERY_S:
                renew()
                last = time.monotonic()
    return results


def _send_one(storage: Storage, stamp: Stamp, item: Outgoing) -> bool:
    queue, data, create = item
    try:
        storage.send(queue, stamp(data), create=create)
    except NotFound:
        if not create:
            raise  # a queue nobody may create here: the caller judges (runs.py, unknown role)
        log.warning("could not send to %s: it does not exist and cannot be created", queue)
        return False
    except RolecallError as e:
        log.warning("could not send to %s: %s", queue, e.message)
        return False
    return True


def _leading(results: list[bool]) -> int:
    for i, ok in enumerate(results):
        if not ok:
            return i
    return len(results)


def _start_child(settings: StorageSettings, stamp: Stamp) -> None:
    # one set of clients per worker process, made once, used by every chunk it sends
    global _child  # noqa: PLW0603
    _child = (Storage(settings), stamp)


def _send_chunk(chunk: Sequence[Outgoing]) -> list[bool]:
    assert _child is not None
    storage, stamp = _child
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda it: _send_one(storage, stamp, it), chunk))
