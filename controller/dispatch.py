"""Rate-controlled dispatch of a run's targets, as in AWS SSM's MaxConcurrency and MaxErrors.

At most ``max_concurrency`` targets are in flight (on a queue without a terminal completion);
once errors exceed ``max_errors`` no further target is dispatched and the rest are reported
``not_dispatched``. Dispatch is driven by folding completions, so it advances wherever events
are folded: the ``rolecall controller`` service, ``rolecall wait`` or ``rolecall status``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import encode_message_data
from rolecall.schemas.jobs import Target
from rolecall.schemas.names import Names
from rolecall.schemas.records import RunMode, RunRecord, TargetState
from rolecall.storage.clients import Storage

if TYPE_CHECKING:
    from rolecall.controller.signing import Signer


def parse_limit(text: str | None, total: int) -> int | None:
    """``"5"`` -> 5, ``"25%"`` -> a quarter of ``total`` (at least 1), None -> no limit."""
    if text is None or text == "":
        return None
    if text.endswith("%"):
        pct = float(text[:-1])
        if not 0 <= pct <= 100:
            raise ValueError(f"percentage {text} must be between 0% and 100%")
        return max(1, int(total * pct / 100)) if pct > 0 else 0
    value = int(text)
    if value < 0:
        raise ValueError(f"limit {text} must not be negative")
    return value


def plan(run: RunRecord) -> tuple[RunRecord, list[str]]:
    """Which pending targets to send now, and the record with the error threshold applied."""
    if run.cancelled or run.template is None:  # baseline runs and runs recorded from events
        return run, []
    errors = run.count("error")
    pending = [k for k, t in run.targets.items() if t.state is TargetState.PENDING]
    if run.max_errors is not None and errors > run.max_errors and pending:
        stopped = {
            k: run.targets[k].model_copy(
                update={
                    "state": TargetState.NOT_DISPATCHED,
                    "reason": f"not dispatched: {errors} errors exceeded max errors "
                    f"{run.max_errors}",
                }
            )
            for k in pending
        }
        return run.model_copy(update={"targets": {**run.targets, **stopped}}), []
    room = (
        len(pending)
        if run.max_concurrency is None
        else run.max_concurrency - run.count("in_flight")
    )
    return run, pending[: max(0, room)]


def mark_dispatched(run: RunRecord, keys: list[str]) -> RunRecord:
    now = utcnow()
    updated = {
        k: run.targets[k].model_copy(update={"state": TargetState.QUEUED, "dispatched_at": now})
        for k in keys
    }
    return run.model_copy(update={"targets": {**run.targets, **updated}})


def messages_for(
    run: RunRecord, keys: list[str], signer: Signer | None = None
) -> Iterator[tuple[str, str]]:
    """(target key, encoded message) for each key.

    The template was validated once, at run creation; per target only the job id and the
    target change, so the JSON is built from a dict instead of a model per target (a
    thousand-target fan-out spends its time sending, not re-validating).
    """
    assert run.template is not None
    base = json.loads(run.template.model_dump_json(exclude_none=True))
    base.pop("signature", None)
    for key in keys:
        target = Target() if run.mode is RunMode.ANY else Target(instance=key)
        data = dict(base, job_id=Names.job_id(run.run_id, key))
        data["target"] = json.loads(target.model_dump_json(exclude_none=True))
        if signer is not None:
            data["signature"] = signer.signature(data).model_dump(mode="json")
        yield key, encode_message_data(data, f"job for {key}")


class Dispatcher:
    """Sends the messages for planned targets; signs them when a signer is configured.

    Messages are sent *before* the record that marks them dispatched is written, so a crash
    can only duplicate a message (deterministic job ids let workers recognise it), never
    record a dispatch that did not happen. Duplicates from races are prevented: dispatch of a
    run holds its dispatch lock, and a write that loses an ETag race to a fold re-applies what
    it already sent instead of sending it again.
    """

    def __init__(self, storage: Storage, signer: Signer | None = None) -> None:
        self.storage = storage
        self.signer = signer

    def dispatch(self, run_id: str) -> RunRecord:
        from rolecall.controller.store import RunStore

        store = RunStore(self.storage)
        with store.dispatch_lock(run_id) as held:
            if not held:
                return store.get(run_id)
            sent: set[str] = set()

            def change(run: RunRecord) -> RunRecord:
                ours = [k for k in sent if run.targets[k].state is TargetState.PENDING]
                run, keys = plan(mark_dispatched(run, ours))
                return mark_dispatched(run, keys)

            def send_new(old: RunRecord, new: RunRecord) -> None:
                keys = [
                    k for k, t in new.targets.items()
                    if k not in sent and t.state is TargetState.QUEUED
                    and old.targets[k].state is TargetState.PENDING
                ]  # fmt: skip
                self.send(new, keys)
                sent.update(keys)

            return store.update(run_id, change, before_write=send_new)

    def queue_for(self, run: RunRecord, key: str) -> str:
        names = self.storage.names
        return names.role_queue(run.role) if run.mode is RunMode.ANY else names.instance_queue(key)

    def send(self, run: RunRecord, keys: list[str]) -> None:
        messages = list(messages_for(run, keys, self.signer))

        # An instance's queue may not exist yet (its agent creates it at its first claim, and
        # may not have claimed yet): create it. A missing role queue is the caller's to judge
        # (runs.py: a typo, or a role with no instance yet).
        create = run.mode is not RunMode.ANY

        def one(item: tuple[str, str]) -> None:
            self.storage.send(self.queue_for(run, item[0]), item[1], create=create)

        if len(messages) <= 2:
            for m in messages:
                one(m)
        else:
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(one, messages))
