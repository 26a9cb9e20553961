"""Rate-controlled dispatch of a run's targets, as in AWS SSM's MaxConcurrency and MaxErrors.

At most ``max_concurrency`` targets are in flight (on a queue without a terminal completion);
once errors exceed ``max_errors`` no further target is dispatched and the rest are reported
``not_dispatched``. Dispatch is driven by folding completions, so it advances wherever events
are folded: the ``rolecall controller`` service, ``rolecall wait`` or ``rolecall status``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rolecall.controller.sender import send_wave
from rolecall.controller.signing import Stamp
from rolecall.schemas.base import utcnow
from rolecall.schemas.jobs import Target
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, RunRecord, TargetState, Wave
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


def plan(view: RunRecord) -> tuple[list[str], str | None]:
    """Which pending targets to send now (in dispatch order), and why dispatch stops for
    good if the error threshold was crossed. ``view`` is the run with its targets' states."""
    if view.cancelled or view.template is None or view.stopped:
        return [], None  # baseline runs and runs recorded from events are not dispatched
    pending = [k for k, t in view.targets.items() if t.state is TargetState.PENDING]
    if not pending:
        return [], None
    errors = view.count("error")
    if view.max_errors is not None and errors > view.max_errors:
        return [], f"not dispatched: {errors} errors exceeded max errors {view.max_errors}"
    room = (
        len(pending)
        if view.max_concurrency is None
        else view.max_concurrency - view.count("in_flight")
    )
    return pending[: max(0, room)], None


def dispatched(view: RunRecord, keys: list[str], stop: str | None = None) -> RunRecord:
    """``view`` once ``keys`` are sent (and, with ``stop``, the rest given up)."""
    now = utcnow()
    targets = dict(view.targets)
    for k in keys:
        targets[k] = targets[k].model_copy(
            update={"state": TargetState.QUEUED, "dispatched_at": now}
        )
    if stop:
        for k, t in targets.items():
            if t.state is TargetState.PENDING:
                targets[k] = t.model_copy(
                    update={"state": TargetState.NOT_DISPATCHED, "reason": stop}
                )
    return view.model_copy(update={"targets": targets, "stopped": stop or view.stopped})


def recorded(stored: RunRecord, view: RunRecord, keys: list[str], stop: str | None) -> RunRecord:
    """What the stored record says once ``keys`` went out: a split run moves its cursor past
    the last of them; a run from before 0.2 keeps every target's state in the record."""
    if not stored.split:
        legacy = dispatched(stored.model_copy(update={"stopped": None}), keys, stop)
        return legacy.model_copy(update={"stopped": None})
    order = list(view.targets)
    cursor = stored.dispatched
    if keys:
        cursor = max(cursor, order.index(keys[-1]) + 1)
    waves = (
        [*stored.waves, Wave(end=cursor, at=utcnow())]
        if cursor > stored.dispatched
        else (stored.waves)
    )
    return stored.model_copy(
        update={"dispatched": cursor, "waves": waves, "stopped": stop or stored.stopped}
    )


def jobs_for(run: RunRecord, keys: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(target key, the job in its JSON form, unsealed) for each key; the sender seals each
    (``sent_at``, signature) as it sends it.

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
        yield key, data


class Dispatcher:
    """Sends the messages for planned targets; signs them when a signer is configured.

    Messages are sent *before* the record that says they were is written, so a crash can only
    duplicate a message (deterministic job ids let workers recognise it), never record a
    dispatch that did not happen. One controller dispatches a run at a time (its dispatch
    lock, renewed while a long wave goes out); folds never write the record, so a dispatch
    rarely loses its write, and when it does the cursor it writes is re-applied, not resent.
    """

    def __init__(self, storage: Storage, signer: Signer | None = None) -> None:
        self.storage = storage
        self.signer = signer

    def dispatch(self, run_id: str, view: RunRecord | None = None) -> RunRecord:
        """Send what rate control allows now; return the run's view afterwards. ``view``:
        the caller's current view of the run, if it has one (the fold does)."""
        from rolecall.controller.store import RunStore

        store = RunStore(self.storage)
        with store.dispatch_lock(run_id) as lease:
            if lease is None:
                return view or store.get(run_id)
            stored, _ = store.load(run_id)
            view = store.view(stored)
            keys, stop = plan(view)
            if not keys and not stop:
                return view
            sent = keys[: self.send(view, keys, lambda: store.renew_lock(run_id, lease))]
            store.update(run_id, lambda s: recorded(s, view, sent, stop if sent == keys else None))
            return dispatched(view, sent, stop if sent == keys else None)

    def queue_for(self, run: RunRecord, key: str) -> str:
        names = self.storage.names
        return names.role_queue(run.role) if run.mode is RunMode.ANY else names.instance_queue(key)

    def send(
        self, run: RunRecord, keys: list[str], renew: Callable[[], None] = lambda: None
    ) -> int:
        """Send ``keys``' messages in order; how many leading ones surely went out.

        An instance's queue may not exist yet (its agent creates it at its first claim, and
        may not have claimed yet): it is created. A missing role queue is the caller's to
        judge (runs.py: a typo, or a role with no instance yet)."""
        create = run.mode is not RunMode.ANY
        items = [(self.queue_for(run, k), data, create) for k, data in jobs_for(run, keys)]
        return send_wave(self.storage, items, Stamp(self.signer), renew)
