"""Waiting for a run: folding its events (no service needed), driving its rate control, and
noticing when waiting longer cannot help.

A job queued for an instance waits for that instance, through reboots and reimages, because
instance names are stable. That is right for the job and wrong for an operator at a prompt: a
``wait`` on an instance that died would hang until its timeout and say nothing. So every few
seconds the waiter lists the role's instances (one List Blobs call) and calls a target
*unreachable* when its job is still queued and its instance reads ``lost`` (or, for ``--any``,
no instance of the role is live). Once every target still in flight is unreachable, nothing
more can finish and the wait ends, saying which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from rolecall.controller.dispatch import Dispatcher
from rolecall.controller.fleet import LIVE, InstanceSummary, list_instances
from rolecall.controller.fold import EventFolder
from rolecall.controller.store import RunStore
from rolecall.schemas.base import utcnow
from rolecall.schemas.runs import RunMode, RunRecord, RunState, TargetState
from rolecall.storage.backoff import IdleBackoff
from rolecall.storage.clients import Storage

#: how often a waiter looks at the fleet (one List Blobs call each time)
FLEET_CHECK_S = 5.0
FINISHED = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass
class Waited:
    record: RunRecord
    #: target key -> why its instance cannot run it now
    unreachable: dict[str, str] = field(default_factory=dict)
    timed_out: bool = False
    #: the targets waited for (None: all of them)
    only: Collection[str] | None = None

    @property
    def keys(self) -> list[str]:
        return [k for k in self.record.targets if self.only is None or k in self.only]

    @property
    def finished(self) -> bool:
        """Nothing left to wait for (a run with no targets has nothing either)."""
        if self.only is None and self.record.targets:
            return self.record.state in FINISHED
        return all(self.record.targets[k].state.terminal for k in self.keys)

    @property
    def stalled(self) -> bool:
        """Nothing waited for can finish: every target in flight is unreachable, and every
        target waited for is one of them or held back behind them by rate control."""
        targets = self.record.targets
        flying = [k for k, t in targets.items() if t.state.in_flight]
        if not flying or not all(k in self.unreachable for k in flying):
            return False
        open_ = [k for k in self.keys if not targets[k].state.terminal]
        return bool(open_) and all(
            k in self.unreachable or targets[k].state is TargetState.PENDING for k in open_
        )


def _ago(then: datetime, now: datetime) -> str:
    s = max(0, int((now - then).total_seconds()))
    return f"{s}s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"


def unreachable(storage: Storage, run: RunRecord, now: datetime | None = None) -> dict[str, str]:
    """In-flight targets that no instance can run now, and why (empty: no fleet read)."""
    flying = [k for k, t in run.targets.items() if t.state.in_flight]
    if not flying:
        return {}
    now = now or utcnow()
    fleet = {s.instance: s for s in list_instances(storage, run.role)}
    if run.mode is RunMode.ANY:
        if any(s.live(now) for s in fleet.values()):
            return {}
        return {k: f"no live instance of role {run.role}" for k in flying}
    return {k: why for k in flying if (why := _why(fleet.get(k), now)) is not None}


def _why(s: InstanceSummary | None, now: datetime) -> str | None:
    if s is None:
        return "instance not registered"
    state = s.liveness(now)
    if state == LIVE:
        return None
    return f"instance {state}, last heartbeat {_ago(s.last_seen, now)} ago"


def wait_for_run(
    storage: Storage,
    dispatcher: Dispatcher,
    run_id: str,
    *,
    timeout: float | None = None,
    progress: Callable[[RunRecord], None] | None = None,
    only: Collection[str] | None = None,
) -> Waited:
    """Fold and dispatch until the run (or the targets in ``only``) finishes, stalls on
    unreachable targets, or ``timeout`` seconds pass. ``progress`` sees every record read."""
    store = RunStore(storage)
    folder = EventFolder(storage, dispatcher)
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff = IdleBackoff(0.2, 2.0)
    next_check = 0.0
    result = Waited(store.get(run_id), only=only)
    while True:
        stats = folder.fold_all()
        result.record = folder.advance(run_id) if not stats.messages else store.get(run_id)
        if progress is not None:
            progress(result.record)
        if result.finished:
            result.unreachable = {}
            return result
        if time.monotonic() >= next_check:
            result.unreachable = unreachable(storage, result.record)
            next_check = time.monotonic() + FLEET_CHECK_S
            if result.stalled:
                return result
        if deadline is not None and time.monotonic() >= deadline:
            result.timed_out = True
            return result
        if stats.messages:
            backoff.busy()
        time.sleep(backoff.idle())


def verdict(w: Waited) -> tuple[int, str]:
    """The exit code of a wait (docs/operators.md) and the line that says why it is not 0
    (Rich markup), for the targets waited for."""
    from rolecall.controller.context import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT

    run, keys = w.record, w.keys
    if w.finished and all(run.targets[k].state.ok for k in keys):
        return EXIT_OK, ""
    if w.stalled:
        which = "; ".join(f"{k} ({w.unreachable[k]})" for k in keys if k in w.unreachable)
        return EXIT_FAILED, (
            f"[red]unreachable:[/] {which}. Their jobs stay queued and run if the instance "
            f"comes back; `rolecall cancel {run.run_id}` withdraws them."
        )
    if w.timed_out:
        rest = ", ".join(f"{k} ({run.targets[k].state.value})" for k in keys
                         if not run.targets[k].state.terminal)  # fmt: skip
        return (
            EXIT_TIMEOUT,
            f"[yellow]timed out waiting for {run.run_id}[/]; still waiting for: {rest}",
        )
    if run.cancelled:
        return EXIT_FAILED, f"[yellow]run {run.run_id} was cancelled[/]"
    return EXIT_FAILED, _failures(run, keys)


def _failures(run: RunRecord, keys: list[str]) -> str:
    """``failed: web-0; not dispatched: web-2, web-3`` and how to try them again."""
    failed = [k for k in keys if run.targets[k].state.error]
    held = [k for k in keys if run.targets[k].state is TargetState.NOT_DISPATCHED]
    parts = [f"[red]failed:[/] {', '.join(failed)}"] if failed else []
    if held:
        parts.append(f"[yellow]not dispatched:[/] {', '.join(held)}")
    flags = " --failed" * bool(failed) + " --not-dispatched" * bool(held)
    hint = f"; `rolecall retry {run.run_id}{flags}` sends the job again" if flags else ""
    return "; ".join(parts) + hint


def pending(run: RunRecord) -> list[str]:
    return [k for k, t in run.targets.items() if t.state is TargetState.PENDING]
