"""Cancelling a run.

Undispatched targets are never sent. Queued messages that no worker has claimed are removed
from their queues (claimed, matched by run id, deleted; others released untouched). Jobs
already running cannot be recalled from outside the instance; their completions, when they
come, are folded as ``cancelled`` with what the job did recorded alongside.
"""

from __future__ import annotations

import contextlib

from rolecall.controller.store import RunStore
from rolecall.schemas.codec import decode_message
from rolecall.schemas.errors import ContractError, NotFound, RolecallError
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.records import RunMode, RunRecord, TargetState
from rolecall.storage.clients import Message, Storage


def cancel_run(storage: Storage, run_id: str) -> RunRecord:
    store = RunStore(storage)

    def mark(run: RunRecord) -> RunRecord:
        targets = {
            k: t.model_copy(update={"state": TargetState.CANCELLED})
            if t.state in (TargetState.PENDING, TargetState.QUEUED, TargetState.RETRYING)
            else t
            for k, t in run.targets.items()
        }
        return run.model_copy(update={"cancelled": True, "targets": targets})

    run = store.update(run_id, mark)
    queues = (
        {storage.names.role_queue(run.role)}
        if run.mode is RunMode.ANY
        else {storage.names.instance_queue(k) for k, t in run.targets.items() if t.dispatched_at}
    )
    for q in sorted(queues):
        remove_run_messages(storage, q, run_id)
    return run


def remove_run_messages(storage: Storage, queue: str, run_id: str) -> int:
    removed = 0
    kept: list[Message] = []
    seen: set[str] = set()
    while True:
        try:
            msgs = storage.receive(queue, max_messages=32, visibility_s=60)
        except NotFound:
            return removed
        fresh = [m for m in msgs if m.id not in seen]
        if not fresh:
            break
        for m in fresh:
            seen.add(m.id)
            try:
                job = decode_message(m.content, JobEnvelope)
            except ContractError:
                kept.append(m)
                continue
            if job.run_id == run_id:
                storage.delete(m)
                removed += 1
            else:
                kept.append(m)
    for m in kept:
        with contextlib.suppress(RolecallError):
            storage.release(m)
    return removed
