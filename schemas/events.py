"""What workers tell the controller, through the events queue.

Workers batch several events into one :class:`EventBatch` message (one queue transaction for
many completions). Folding is idempotent: the controller may see any event twice, because
queues deliver at least once.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from rolecall.schemas.base import TAIL_CHARS, Contract, Id, Name, Timestamp
from rolecall.schemas.version import Since


class Outcome(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"  # poisoned: malformed, tampered, unsigned, wrong target ...
    EXPIRED = "expired"  # claimed after its not_after deadline
    CANCELLED = "cancelled"
    REBOOT_REQUIRED = "reboot_required"  # done; the instance must reboot before what follows

    @property
    def ok(self) -> bool:
        return self in (Outcome.SUCCEEDED, Outcome.REBOOT_REQUIRED)


class Completion(Contract):
    """The result of one attempt of one job (or baseline step) on one instance."""

    kind: Literal["completion"] = "completion"
    job_id: Id
    run_id: Id
    role: Name
    instance: Name
    incarnation: Name
    outcome: Outcome
    will_retry: bool = Field(default=False, description="a failed attempt that will be retried")
    exit_code: int | None = None
    attempt: int = Field(default=1, ge=0, description="the message's dequeue count")
    started_at: Timestamp | None = None
    finished_at: Timestamp
    duration_s: float = Field(default=0.0, ge=0)
    stdout_tail: str = Field(default="", max_length=TAIL_CHARS)
    stderr_tail: str = Field(default="", max_length=TAIL_CHARS)
    log_blob: str | None = None
    #: bytes of output the log left out between each stream's head and tail (None: none)
    log_cut_bytes: Annotated[int | None, Since("1.4")] = None
    reason: str | None = Field(default=None, max_length=1024)
    step: int | None = Field(default=None, description="baseline step index")
    steps_total: int | None = Field(default=None, description="steps in the baseline")
    baseline_version: int | None = None
    signed_by: str | None = None
    replayed: bool = Field(
        default=False, description="already applied by this incarnation; reported again"
    )


class Hello(Contract):
    """Posted once per agent start; a new incarnation means the instance was (re)imaged."""

    kind: Literal["hello"] = "hello"
    role: Name
    instance: Name
    incarnation: Name
    new_incarnation: bool
    agent_version: str
    boot_time: Timestamp
    platform: str = ""
    #: the contract version the agent speaks; absent from agents before the rules (1.0)
    contract: Annotated[str | None, Since("1.1")] = None


Event = Annotated[Completion | Hello, Field(discriminator="kind")]


class Started(Contract):
    """A job was claimed and is running here: ``status`` shows it ``running`` at once.

    Carried in a batch's ``started`` list rather than among its events, so a controller that
    does not know it ignores it (and folds the completions beside it) instead of refusing the
    whole batch."""

    job_id: Id
    run_id: Id
    instance: Name
    incarnation: Name
    attempt: int = Field(default=1, ge=0)
    started_at: Timestamp


class BatchSignature(Contract):
    """The sending instance's signature over the batch as sent (minus this field), with the
    key enrolled for it when its credentials were issued (``rolecall sas worker``)."""

    key_id: str = Field(max_length=64)
    algorithm: Literal["ed25519"] = "ed25519"
    value: str = Field(max_length=200)


class EventBatch(Contract):
    kind: Literal["events"] = "events"
    sender: Name
    events: list[Event] = Field(default_factory=list)
    started: Annotated[list[Started], Since("1.2")] = Field(default_factory=list)
    signature: Annotated[BatchSignature | None, Since("1.2")] = None

    @model_validator(mode="after")
    def _not_empty(self) -> EventBatch:
        if not self.events and not self.started:
            raise ValueError("an events batch must carry at least one event or started note")
        return self
