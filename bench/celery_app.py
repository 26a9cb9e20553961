"""The peer: a Celery app on kombu's Azure Storage Queues transport, pointed at Azurite.

Configured from the environment so the benchmark process (producer) and the ``celery worker``
processes it starts agree: ``BENCH_BROKER_URL`` (``azurestoragequeues://<key>@<queue url>``),
``BENCH_QUEUE_PREFIX`` (isolates one run's queues), ``BENCH_LEDGER`` (the file tasks append
to: ground truth of what ran) and ``BENCH_ACKS_LATE`` (``1``: ``task_acks_late`` with
``task_reject_on_worker_lost``, the settings Celery documents for surviving a worker's death).

Everything not needed is off (results, events, remote control, gossip), so Celery is measured
doing only what rolecall does: take a message, run the task, account for it.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

from celery import Celery
from celery.signals import worker_shutdown
from kombu.transport import azurestoragequeues

from rolecall.devtools.azurite import ACCOUNT_KEY


def broker_url(queue_url: str) -> str:
    """kombu parses ``<credential>@<url>`` with rsplit, so the key's slashes are fine; with a
    ``devstoreaccount1`` URL it treats the credential as Azurite's account key."""
    return f"azurestoragequeues://{ACCOUNT_KEY}@{queue_url}"


ACKS_LATE = os.environ.get("BENCH_ACKS_LATE") == "1"
LEDGER = os.environ.get("BENCH_LEDGER", "")

app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "memory://"))
app.conf.update(
    broker_transport_options={"queue_name_prefix": os.environ.get("BENCH_QUEUE_PREFIX", "")},
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    task_acks_late=ACKS_LATE,
    task_reject_on_worker_lost=ACKS_LATE,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
)


# --- metering: count the transport's storage requests, as storage.meter does for rolecall --

TX: Counter[str] = Counter()


def _count(request: Any) -> None:
    http = request.http_request
    TX[f"queue.{http.method}"] += 1


def _metered_service(self: Any) -> Any:
    """The transport's own property, plus a raw_request_hook: every request is counted."""
    if self._queue_service is None:
        from azure.storage.queue import QueueServiceClient

        self._queue_service = QueueServiceClient(
            account_url=self._url, credential=self._credential, raw_request_hook=_count
        )
    return self._queue_service


azurestoragequeues.Channel.queue_service = property(_metered_service)  # type: ignore[assignment,method-assign]


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _dump_tx(**_: Any) -> None:
    if LEDGER:
        with open(LEDGER + ".tx.json", "w") as f:
            json.dump(dict(TX), f)


def _record(line: str) -> None:
    # one O_APPEND write per line: concurrent pool processes never interleave
    fd = os.open(LEDGER or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(i: int) -> None:
    """The throughput task: nothing but the ledger line that lets the benchmark count it."""
    _record(f"done {i}")


@app.task(name="bench.sleepy")  # type: ignore[untyped-decorator]
def sleepy(i: int, seconds: float) -> None:
    """The SIGKILL scenario's task: starts, works a while, finishes."""
    _record(f"start {i}")
    time.sleep(seconds)
    _record(f"done {i}")
