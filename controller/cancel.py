"""Cancelling a run.

Undispatched targets are never sent. Queued messages that no worker has claimed are removed
from their queues (claimed, matched by run id, deleted; others released untouched). Jobs
already running cannot be recalled from outside the instance; their completions, when they
come, are folded as ``cancelled`` with what the job did recorded alongside.
"""

from __future__ import annotations

from rolecall.controller.store import RunStore
from rolecall.schemas.codec import decode_message
from rolecall.schemas.errors import ContractError, NotFound
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.records import RunMode, RunRecord, TargetState
from rolecall.storage.clients import Message, Storage
from rolecall.storage.sweep import sweep


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
    """Delete the run's jobs that no worker has claimed; release everything else."""

    def of_run(m: Message) -> bool:
        try:
            return decode_message(m.content, JobEnvelope).run_id == run_id
        except ContractError:
            return False  # not ours to judge: the worker poisons it

    try:
        return sweep(storage, queue, of_run, visibility_s=60)
    except NotFound:
        return 0  # the queue was never made: nothing was sent to it
