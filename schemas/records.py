"""Documents kept in the state container: instance records, run records, poison records.

Run records are written only by the controller side (ETag-guarded, so several controllers
are safe); an instance record is written only by its own worker (it is that worker's
heartbeat: one blob put, no controller needed for liveness).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, ClassVar, Literal
from urllib.parse import quote, unquote

from pydantic import Field

from rolecall.schemas.base import TAIL_CHARS, Contract, Name, Timestamp
from rolecall.schemas.events import Completion, Outcome
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.version import PRE_RULES, Since


class InstanceState(str, Enum):
    BOOTING = "booting"
    CONFIGURING = "configuring"
    READY = "ready"
    REBOOT_PENDING = "reboot_pending"
    STOPPED = "stopped"


class InstanceRecord(Contract):
    kind: Literal["instance"] = "instance"
    role: Name
    instance: Name
    incarnation: Name
    agent_version: str
    boot_time: Timestamp
    last_seen: Timestamp
    state: InstanceState = InstanceState.BOOTING
    baseline_version: int | None = Field(
        default=None, description="the baseline version fully applied by this incarnation"
    )
    heartbeat_s: float = Field(default=600.0, gt=0)
    platform: str = ""
    #: the contract version the agent speaks; absent from agents before the rules (1.0)
    contract: Annotated[str | None, Since("1.1")] = None

    def is_live(self, now: datetime, grace: float = 2.5) -> bool:
        """Live while the last heartbeat is younger than ``grace`` heartbeat intervals."""
        return self.state != InstanceState.STOPPED and now - self.last_seen <= timedelta(
            seconds=self.heartbeat_s * grace
        )

    def to_metadata(self) -> dict[str, str]:
        """Blob metadata, so a role's fleet is one List Blobs call instead of N reads."""
        return {
            "instance": quote(self.instance, safe=""),
            "incarnation": self.incarnation,
            "lastseen": self.last_seen.isoformat(),
            "state": self.state.value,
            "baseline": "" if self.baseline_version is None else str(self.baseline_version),
            "heartbeat": str(self.heartbeat_s),
            "agent": self.agent_version,
            "contract": self.contract or str(PRE_RULES),
        }

    @staticmethod
    def summary_from_metadata(meta: dict[str, str]) -> dict[str, str]:
        out = dict(meta)
        out["instance"] = unquote(meta.get("instance", ""))
        return out


class TargetState(str, Enum):
    PENDING = "pending"  # not dispatched yet (rate control)
    QUEUED = "queued"  # on a queue, no completion folded yet
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
        return self not in (TargetState.PENDING, TargetState.QUEUED, TargetState.RETRYING)

    @property
    def ok(self) -> bool:
        return self in (TargetState.SUCCEEDED, TargetState.REBOOT_REQUIRED)

    @property
    def in_flight(self) -> bool:
        return self in (TargetState.QUEUED, TargetState.RETRYING)

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

    def folded(self, c: Completion, *, cancelled: bool) -> TargetResult:
        """This target after completion ``c``: a pure, order-free fold.

        Of all completions seen for a target, the one with the highest rank
        (terminal, ok, attempt, then tie-breakers) wins. A maximum does not care about
        order or repetition, which is what a queue that delivers at least once, in any order,
        needs. A cancelled run keeps showing ``cancelled`` but records what the job did.
        """
        reported = TargetState.RETRYING if c.will_retry else TargetState.of(c.outcome)
        if self.reported is not None and self.finished_at is not None:
            mine = _rank(
                self.reported, self.attempts, self.finished_at, self.instance, self.exit_code,
                self.outcome,
            )  # fmt: skip
            theirs = _rank(reported, c.attempt, c.finished_at, c.instance, c.exit_code, c.outcome)
            if theirs <= mine:
                return self
        state = reported
        if cancelled and (not reported.terminal or self.state == TargetState.CANCELLED):
            state = TargetState.CANCELLED
        return self.model_copy(
            update={
                "state": state,
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
                "reason": c.reason,
                "outcome": c.outcome,
            }
        )

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
                reason=c.reason, duration_s=c.duration_s,
            )  # fmt: skip
        return self.model_copy(update=update)


def _step_key(s: StepResult, index: int) -> tuple[datetime, int, bool, str, int]:
    return (s.finished_at, index, s.outcome.ok, s.outcome.value, s.exit_code or 0)


def _rank(
    state: TargetState,
    attempt: int,
    finished: datetime,
    instance: str | None,
    code: int | None,
    outcome: Outcome | None,
) -> tuple[bool, bool, int, datetime, str, str, int, str]:
    """A total order on reports: terminal beats retrying, success beats failure, later
    attempts beat earlier ones; the rest only breaks ties so the order of arrival never
    matters."""
    return (
        state.terminal, state.ok, attempt, finished, state.value, instance or "", code or 0,
        outcome.value if outcome else "",
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


class RunRecord(Contract):
    kind: Literal["run"] = "run"
    run_id: Name
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


class Incarnation(Contract):
    incarnation: Name
    boot_time: Timestamp
    agent_version: str = ""


class InstanceHistory(Contract):
    """The incarnations the controller has seen for one instance (from hello events)."""

    kind: Literal["history"] = "history"
    role: Name
    instance: Name
    incarnations: list[Incarnation] = Field(default_factory=list)

    #: enough to see a reimage storm; older entries are dropped
    LIMIT: ClassVar[int] = 20

    def with_hello(self, incarnation: str, boot_time: datetime, version: str) -> InstanceHistory:
        if any(i.incarnation == incarnation for i in self.incarnations):
            return self
        entry = Incarnation(incarnation=incarnation, boot_time=boot_time, agent_version=version)
        merged = sorted([*self.incarnations, entry], key=lambda i: i.boot_time)[-self.LIMIT :]
        return self.model_copy(update={"incarnations": merged})


class PoisonRecord(Contract):
    """What a poison queue holds: the original message and why it was refused."""

    kind: Literal["poison"] = "poison"
    source_queue: Name
    reason: str
    error: str = Field(max_length=4096)
    original: str = Field(description="the message text as received (possibly truncated)")
    original_truncated: bool = False
    message_id: str = ""
    dequeue_count: int = 0
    job_id: str | None = None
    run_id: str | None = None
    instance: str | None = None
    incarnation: str | None = None
    poisoned_at: Timestamp
    last_output: str = Field(default="", max_length=TAIL_CHARS)
