"""Cancelling a run.

Nothing more is dispatched. Job messages no worker has claimed are removed from their queues
(claimed, matched by run id, deleted; others released untouched). Every instance that may be
running the run gets a ``cancel`` job on its own queue: it refuses the run's jobs from then
on, and stops a running one at its next lease renewal (worker/cancels.py), within half a
lease (30 s by default). A target reads ``cancelled`` only if it never ran or was stopped;
a job that finished before the cancel reached it shows what it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from rolecall.controller.fleet import live_instances
from rolecall.controller.sender import send_wave
from rolecall.controller.signing import Signer, Stamp, job_data
from rolecall.controller.store import RunStore
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_message
from rolecall.schemas.errors import ContractError, NotFound
from rolecall.schemas.jobs import DEFAULT_DEADLINE_S, JobEnvelope, Target
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, RunRecord, RunState, TargetState
from rolecall.storage.clients import Message, Storage
from rolecall.storage.sweep import sweep

_IN_FLIGHT = (TargetState.QUEUED, TargetState.RUNNING, TargetState.RETRYING)


@dataclass
class Cancellation:
    run: RunRecord
    #: why nothing changed: the run had already finished, or was cancelled before
    unchanged: str | None = None
    removed: int = 0
    stopping: list[str] = field(default_factory=list)


def cancel_run(storage: Storage, run_id: str, signer: Signer | None = None) -> Cancellation:
    store = RunStore(storage)
    view = store.get(run_id)
    if view.cancelled:
        return Cancellation(view, unchanged="was already cancelled")
    if view.state in (RunState.SUCCEEDED, RunState.FAILED):
        return Cancellation(view, unchanged=f"had already finished ({view.state.value})")
    store.update(run_id, lambda r: r.model_copy(update={"cancelled": True}))
    removed = 0
    queues = (
        [storage.names.role_queue(view.role)]
        if view.mode is RunMode.ANY
        else [storage.names.instance_queue(k) for k, t in view.targets.items()
              if t.state in _IN_FLIGHT]
    )  # fmt: skip
    for q in queues:
        removed += remove_run_messages(storage, q, run_id)
    stopping = _running_somewhere(storage, view, removed)
    _send_cancels(storage, view, stopping, signer)
    return Cancellation(store.get(run_id), removed=removed, stopping=stopping)


def _running_somewhere(storage: Storage, view: RunRecord, removed: int) -> list[str]:
    """Instances that may be running one of the run's jobs now."""
    if view.mode is not RunMode.ANY:
        return [k for k, t in view.targets.items() if t.state in _IN_FLIGHT]
    target = view.targets.get("any")
    if target is None or target.state not in _IN_FLIGHT:
        return []
    if target.state is TargetState.RUNNING and target.instance:
        return [target.instance]
    if removed:
        return []  # its one message was still waiting: it is gone now
    # claimed, but no instance has said it started it yet: tell every live instance
    return live_instances(storage, view.role)


def _send_cancels(
    storage: Storage, view: RunRecord, instances: list[str], signer: Signer | None
) -> None:
    now = utcnow()
    items = []
    for instance in instances:
        job = JobEnvelope(
            action="cancel", job_id=Names.job_id(view.run_id, f"cancel-{instance}"),
            run_id=view.run_id, role=view.role, target=Target(instance=instance),
            cancel_run=view.run_id, created_at=now, max_attempts=5,
            not_after=now + timedelta(seconds=DEFAULT_DEADLINE_S),
        )  # fmt: skip
        items.append((storage.names.instance_queue(instance), job_data(job), True))
    send_wave(storage, items, Stamp(signer))


def remove_run_messages(storage: Storage, queue: str, run_id: str) -> int:
    """Delete the run's jobs that no worker has claimed; release everything else."""

    def of_run(m: Message) -> bool:
        try:
            job = decode_message(m.content, JobEnvelope)
        except ContractError:
            return False  # not ours to judge: the worker poisons it
        return job.run_id == run_id and job.action == "run"

    try:
        return sweep(storage, queue, of_run, visibility_s=60)
    except NotFound:
        return 0  # the queue was never made: nothing was sent to it
