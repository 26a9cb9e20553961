"""What this instance did, kept in its own instance record for ``rolecall history``: the job
attempts it reported and the baseline versions its incarnations applied.

The record is written at every heartbeat anyway, so the history costs no transaction of its
own; and it is read at start (worker/registration.py), so it survives restarts and reimages:
a new incarnation carries its predecessor's history forward. Bounded, newest last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rolecall.schemas.base import utcnow
from rolecall.schemas.events import Completion
from rolecall.schemas.instances import BaselineApplied, JobDone
from rolecall.schemas.records import InstanceRecord
from rolecall.worker.outbox import Outbox


class History:
    def __init__(self, incarnation: str) -> None:
        self.incarnation = incarnation
        self.jobs: list[JobDone] = []
        self.baselines: list[BaselineApplied] = []

    def carry(self, previous: InstanceRecord | None) -> None:
        """Start from what the record said before this agent (same instance name)."""
        if previous is not None:
            self.jobs = list(previous.jobs)[-JobDone.LIMIT :]
            self.baselines = list(previous.baselines)[-BaselineApplied.LIMIT :]

    def saw(self, events: Iterable[Any]) -> None:
        """Job completions this agent reports (not baseline steps, not replays)."""
        for c in events:
            if not isinstance(c, Completion) or c.step is not None or c.replayed:
                continue
            outcome = "retrying" if c.will_retry else c.outcome.value
            self.jobs = [*self.jobs, JobDone(
                run_id=c.run_id, job_id=c.job_id, outcome=outcome, exit_code=c.exit_code,
                attempt=c.attempt, finished_at=c.finished_at, incarnation=c.incarnation,
            )][-JobDone.LIMIT :]  # fmt: skip

    def applied(self, version: int | None) -> None:
        """Note ``version`` as applied by this incarnation, once."""
        if version is None:
            return
        if any(b.version == version and b.incarnation == self.incarnation for b in self.baselines):
            return
        entry = BaselineApplied(version=version, incarnation=self.incarnation, at=utcnow())
        self.baselines = [*self.baselines, entry][-BaselineApplied.LIMIT :]


class ReportingOutbox(Outbox):
    """The outbox, noting every job completion it is handed in the instance's history."""

    def __init__(self, *args: Any, history: History, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history = history

    def add(self, events: Any, *args: Any, **kwargs: Any) -> Any:
        self.history.saw(events)
        return super().add(events, *args, **kwargs)
