"""The operator's side of rolecall as the benchmarks drive it: publish a payload, put job
envelopes straight on a queue (as ``tests/fleet.py``'s Operator does), read the events queue,
and sum the transaction counts workers dump with ``--stats-file``.

Jobs are enqueued directly rather than through ``rolecall run`` where a benchmark measures the
workers: the controller's own cost is measured separately (transactions, fan-out).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bench.core import send_many
from rolecall.controller.payloads import publish_bytes
from rolecall.devtools.reports import read_reports
from rolecall.schemas import (
    Completion,
    Hello,
    InstanceRecord,
    InstanceState,
    JobEnvelope,
    Names,
    PayloadKind,
    PayloadRef,
    Target,
    __version__,
    encode_document,
    encode_message,
    utcnow,
)
from rolecall.schemas.events import Event
from rolecall.storage.clients import Storage


def publish(storage: Storage, data: bytes, filename: str = "job.sh") -> PayloadRef:
    storage.ensure_containers()
    return publish_bytes(storage, data, filename, PayloadKind.SCRIPT)


def job(role: str, payload: PayloadRef, run_id: str, key: str, **kw: object) -> JobEnvelope:
    return JobEnvelope.model_validate(
        {
            "job_id": f"{run_id}.{key}",
            "run_id": run_id,
            "role": role,
            "target": Target(),
            "payload": payload,
            "created_at": utcnow(),
            **kw,
        }
    )


def enqueue_role_jobs(
    storage: Storage, role: str, payload: PayloadRef, n: int, run_id: str = "bench", **kw: object
) -> list[str]:
    """``n`` distinct jobs sharing one payload on ``role``'s queue; returns their ids."""
    jobs = [job(role, payload, run_id, f"j{i:05d}", **kw) for i in range(n)]
    storage.ensure_queue(storage.names.events_queue)
    send_many(storage, storage.names.role_queue(role), [encode_message(j) for j in jobs])
    return [j.job_id for j in jobs]


class EventReader:
    """Drains the reports (read, decode, delete), keeping everything it saw."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.events: list[Event] = []
        self.messages = 0

    def drain(self) -> list[Event]:
        batches = read_reports(self.storage)
        self.messages += len(batches)
        self.events += [e for b in batches for e in b.events]
        return self.events

    def completions(self) -> list[Completion]:
        self.drain()
        return [e for e in self.events if isinstance(e, Completion)]

    def hellos(self) -> list[Hello]:
        self.drain()
        return [e for e in self.events if isinstance(e, Hello)]


def read_stats(paths: list[Path]) -> Counter[str]:
    """Sum the per-operation counts that workers wrote on exit."""
    total: Counter[str] = Counter()
    for p in paths:
        total.update(json.loads(p.read_text()))
    return total


def register_instance(storage: Storage, role: str, instance: str, *, create_queue: bool) -> None:
    """Register an instance the way ``worker.agent.Agent._write_record`` does (the record blob
    with its metadata, so ``--each`` finds it in one List Blobs), and make its queue."""
    now = utcnow()
    record = InstanceRecord(
        role=role,
        instance=instance,
        incarnation="bench",
        agent_version=__version__,
        boot_time=now,
        last_seen=now,
        state=InstanceState.READY,
        platform="Linux",
    )
    storage.put_blob(
        storage.names.state_container,
        Names.instance_blob(role, instance),
        encode_document(record),
        metadata=record.to_metadata(),
    )
    if create_queue:
        storage.ensure_queue(storage.names.instance_queue(instance))
