"""Runs and what became of their targets: records, states, and the fold that turns reports
into a target's state.

The fold is a maximum under a total order (``_rank``), per target, so the order and repetition
of reports never matter: a queue delivers at least once and in any order, several controllers
may fold at once, and any set of stored reports folds to the same result however it was split
or merged (controller/results.py relies on that to store results incrementally).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Literal

from pydantic import Field

from rolecall.schemas.base import TAIL_CHARS, Contract, Id, Name, Timestamp
from rolecall.schemas.events import Completion, Outcome, Started
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.version import Since


class TargetState(str, Enum):
    PENDING = "pending"  # not dispatched yet (rate control)
    QUEUED = "queued"  # on a queue, no completion folded yet
    RUNNING = "running"  # claimed: an instance said it started it
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REBOOT_REQUIRED = "reboot_required"
    NOT_DISPATCHED = "not_dispatched"  # the error threshold stopped dispatch

    @property
    def terminal(self) -> bool:
        return self not in _NOT_TERMINAL

    @property
    def ok(self) -> bool:
        return self in (TargetState.SUCCEEDED, TargetState.REBOOT_REQUIRED)

    @property
    def in_flight(self) -> bool:
        return self in (TargetState.QUEUED, TargetState.RUNNING, TargetState.RETRYING)

    @property
    def error(self) -> bool:
        return (
            self.terminal
            and not self.ok
            and self
            not in (
                TargetState.CANCELLED,
                TargetState.NOT_DISPATCHED,
            )
        )

    @staticmethod
    def of(outcome: Outcome) -> TargetState:
        return TargetState(outcome.value)


_NOT_TERMINAL = frozenset(
    {TargetState.PENDING, TargetState.QUEUED, TargetState.RUNNING, TargetState.RETRYING}
)


class StepResult(Contract):
    """One baseline step as last reported by an instance."""

    outcome: Outcome
    finished_at: Timestamp
    exit_code: int | None = None
    duration_s: float | None = None


class TargetResult(Contract):
    target: Name
    state: TargetState = TargetState.PENDING
    instance: str | None = Field(default=None, description="who did it (for 'any' targets)")
    incarnation: str | None = None
    exit_code: int | None = None
    attempts: int = 0
    dispatched_at: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    duration_s: float | None = None
    stdout_tail: str = Field(default="", max_length=TAIL_CHARS)
    stderr_tail: str = Field(default="", max_length=TAIL_CHARS)
    log_blob: str | None = None
    log_cut_bytes: Annotated[int | None, Since("1.4")] = None
    reason: str | None = None
    outcome: Outcome | None = None

    reported: TargetState | None = Field(
        default=None, description="the state the winning completion implied"
    )
    steps: dict[int, StepResult] = Field(
        default_factory=dict, description="baseline runs: the latest incarnation's steps"
    )
    steps_total: int | None = None
    shown_step: int | None = Field(default=None, description="whose output the row shows")

    def folded(self, c: Completion) -> TargetResult:
        """This target after completion ``c``: a pure, order-free fold.

        Of all reports seen for a target, the one with the highest rank (terminal, ok,
        attempt, a completion over a started note, then tie-breakers) wins. A maximum does
        not care about order or repetition, which is what a queue that delivers at least
        once, in any order, needs.
        """
        reported = TargetState.RETRYING if c.will_retry else TargetState.of(c.outcome)
        theirs = _rank(reported, c.attempt, True, c.finished_at, c.instance, c.exit_code,
                       c.outcome)  # fmt: skip
        if self._rank() is not None and theirs <= self._rank():  # type: ignore[operator]
            return self
        return self.model_copy(
            update={
                "state": reported,
                "reported": reported,
                "instance": c.instance,
                "incarnation": c.incarnation,
                "exit_code": c.exit_code,
                "attempts": c.attempt,
                "started_at": c.started_at,
                "finished_at": c.finished_at,
                "duration_s": c.duration_s,
                "stdout_tail": c.stdout_tail,
                "stderr_tail": c.stderr_tail,
                "log_blob": c.log_blob,
                "log_cut_bytes": c.log_cut_bytes,
                "reason": c.reason,
                "outcome": c.outcome,
            }
        )

    def folded_started(self, s: Started) -> TargetResult:
        """A started note: ``running`` on that instance, unless a report of the same or a
        later attempt (or a terminal one) is already in. What it leaves depends on the note
        alone, like a completion's, so the fold stays order-free."""
        theirs = _rank(TargetState.RUNNING, s.attempt, False, s.started_at, s.instance, 0, None)
        if self._rank() is not None and theirs <= self._rank():  # type: ignore[operator]
            return self
        return self.model_copy(
            update={
                "state": TargetState.RUNNING, "reported": TargetState.RUNNING,
                "instance": s.instance, "incarnation": s.incarnation, "attempts": s.attempt,
                "started_at": s.started_at, "finished_at": None, "exit_code": None,
                "duration_s": None, "stdout_tail": "", "stderr_tail": "", "log_blob": None,
                "log_cut_bytes": None, "outcome": None, "reason": None,
            }
        )  # fmt: skip

    def _rank(self) -> Rank | None:
        if self.reported is None:
            return None
        reported = self.reported is not TargetState.RUNNING
        when = self.finished_at if reported else self.started_at
        if when is None:
            return None
        return _rank(self.reported, self.attempts, reported, when, self.instance,
                     self.exit_code, self.outcome)  # fmt: skip

    def folded_step(self, c: Completion) -> TargetResult:
        """A baseline step report. Only the newest incarnation's steps count (a reimaged
        instance starts over); within it the latest report of each step wins, and the target
        shows the latest report overall. All three are maxima under total orders, so the
        order and repetition of events do not matter."""
        assert c.step is not None
        if self.finished_at is not None and self.incarnation != c.incarnation:
            if (c.finished_at, c.incarnation) <= (self.finished_at, self.incarnation or ""):
                return self  # from an incarnation that has since been replaced
            steps: dict[int, StepResult] = {}
            shown = None
        else:
            steps = dict(self.steps)
            shown = self.shown_step
        new = StepResult(
            outcome=c.outcome, finished_at=c.finished_at, exit_code=c.exit_code,
            duration_s=c.duration_s,
        )  # fmt: skip
        current = steps.get(c.step)
        if current is not None and _step_key(new, c.step) <= _step_key(current, c.step):
            return self
        before = steps.get(shown) if shown is not None else None
        steps[c.step] = new
        total = c.steps_total or len(steps)
        failed = [s for s in steps.values() if not s.outcome.ok]
        if failed:
            state = TargetState.of(failed[0].outcome)
        elif sum(1 for s in steps.values() if s.outcome.ok) >= total:
            state = TargetState.SUCCEEDED
        else:
            state = TargetState.QUEUED
        update: dict[str, object] = {
            "steps": dict(sorted(steps.items())),
            "steps_total": total,
            "state": state,
            "reported": state,
            "instance": c.instance,
            "incarnation": c.incarnation,
            "attempts": 1,
            "outcome": failed[0].outcome if failed else (Outcome.SUCCEEDED if state.ok else None),
        }
        if before is None or shown is None or _step_key(new, c.step) > _step_key(before, shown):
            update.update(
                shown_step=c.step, finished_at=c.finished_at, exit_code=c.exit_code,
                stdout_tail=c.stdout_tail, stderr_tail=c.stderr_tail, log_blob=c.log_blob,
                log_cut_bytes=c.log_cut_bytes, reason=c.reason, duration_s=c.duration_s,
            )  # fmt: skip
        return self.model_copy(update=update)


def _step_key(s: StepResult, index: int) -> tuple[datetime, int, bool, str, int]:
    return (s.finished_at, index, s.outcome.ok, s.outcome.value, s.exit_code or 0)


Rank = tuple[bool, bool, int, bool, datetime, str, str, int, str]


def _rank(
    state: TargetState,
    attempt: int,
    reported: bool,
    when: datetime,
    instance: str | None,
    code: int | None,
    outcome: Outcome | None,
) -> Rank:
    """A total order on reports: terminal beats retrying, success beats failure, later
    attempts beat earlier ones, a completion beats a started note of its attempt; the rest
    only breaks ties so the order of arrival never matters."""
    return (
        state.terminal, state.ok, attempt, reported, when, state.value, instance or "",
        code or 0, outcome.value if outcome else "",
    )  # fmt: skip


class RunMode(str, Enum):
    ANY = "any"
    EACH = "each"
    BASELINE = "baseline"


class RunState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Wave(Contract):
    """Targets ``[start, end)`` of the run's order were sent at ``at``."""

    end: int = Field(ge=0)
    at: Timestamp


class RunRecord(Contract):
    """A run: what every target gets and how dispatch is going.

    Stored two ways. Records from before 0.2 hold every target's state in ``targets``, and
    each fold rewrote the whole record: a 5,000-target run was 2.4 MB rewritten per batch of
    32 completions. From 0.2 (``layout="split"``) the record is small and changes only with
    dispatch: the targets' order is written once beside it (``RunTargets``), dispatch is a
    cursor into that order (``dispatched``, ``waves``), and what instances reported is kept in
    result documents the fold only adds (``ResultsDelta``). A reader joins the three into the
    same view, with ``targets`` filled in (controller/results.py).
    """

    kind: Literal["run"] = "run"
    run_id: Id
    role: Name
    mode: RunMode
    created_at: Timestamp
    updated_at: Timestamp
    issuer: str = "rolecall"
    description: str = ""
    template: JobEnvelope | None = Field(
        default=None, description="the job every target gets; None for baseline runs"
    )
    targets: dict[str, TargetResult] = Field(default_factory=dict)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_errors: int | None = Field(default=None, ge=0)
    cancelled: bool = False

    #: "split": targets, dispatch and results are kept apart (see above); a reader that does
    #: not know it would take this run for one without targets
    layout: Annotated[Literal["split"] | None, Since("1.2", critical=True)] = None
    #: a split run's targets in dispatch order, when there are few enough to keep here;
    #: None: they are in their own document (``RunTargets``), written once
    order: Annotated[list[str] | None, Since("1.2")] = None
    total: Annotated[int, Since("1.2")] = 0
    dispatched: Annotated[int, Since("1.2")] = 0
    waves: Annotated[list[Wave], Since("1.2")] = Field(default_factory=list)
    #: targets left out before dispatch, with why (an agent too old to read the job)
    skipped: Annotated[dict[str, str], Since("1.2")] = Field(default_factory=dict)
    #: why dispatch stopped for good (the error threshold); the rest is not_dispatched
    stopped: Annotated[str | None, Since("1.2")] = None

    @property
    def split(self) -> bool:
        return self.layout == "split"

    @property
    def active(self) -> bool:
        """May still need dispatching."""
        if self.cancelled or self.stopped:
            return False
        if self.split:
            return self.dispatched + len(self.skipped) < self.total
        return any(t.state is TargetState.PENDING for t in self.targets.values())

    @property
    def state(self) -> RunState:
        results = list(self.targets.values())
        if self.cancelled and not any(t.state.in_flight for t in results):
            return RunState.CANCELLED
        if results and all(t.state.terminal for t in results):
            return RunState.SUCCEEDED if all(t.state.ok for t in results) else RunState.FAILED
        if any(t.state != TargetState.PENDING for t in results):
            return RunState.RUNNING
        return RunState.PENDING

    def count(self, predicate: str) -> int:
        return sum(1 for t in self.targets.values() if getattr(t.state, predicate))


class RunTargets(Contract):
    """A split run's targets in dispatch order: written once, with the run."""

    kind: Literal["run_targets"] = "run_targets"
    run_id: Id
    order: list[str] = Field(default_factory=list)


class ResultsDelta(Contract):
    """Reports folded into a split run by one fold round (or a compaction of several).
    Any set of these joins to the same result: the fold is order-free and idempotent."""

    kind: Literal["run_results"] = "run_results"
    run_id: Id
    completions: list[Completion] = Field(default_factory=list)
    started: list[Started] = Field(default_factory=list)
