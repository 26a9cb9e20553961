"""The job envelope: what the controller puts on a role or instance queue.

A job names its payload by SHA-256 (content addressing: the worker verifies the bytes before
running anything), says how to run it, and carries its own limits (timeout, delivery deadline,
attempts). The signature, when present, covers the canonical form of everything else, so the
payload digest and the target are bound to it.

A signature alone does not stop a signed job from running again: anyone who can send to, or
update messages on, its queue (every worker of the role can) may put an old signed job back.
So the sender stamps ``sent_at`` (signed) at the moment it sends each message, and the worker
compares it with the insertion time the queue service stamped on the message it received,
which no sender can choose and an ``update`` does not change (``worker/binding.py``). Every
job also carries a delivery deadline, 7 days unless the operator sets one.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from rolecall.schemas.base import Contract, Digest, Id, Name, Timestamp
from rolecall.schemas.sealing import Sealed
from rolecall.schemas.version import Since

#: the delivery deadline a job gets unless the operator sets one: the queue service's own
#: default message lifetime (rolecall sends messages that never expire, so this is the limit)
DEFAULT_DEADLINE_S = 7 * 24 * 3600


class PayloadKind(str, Enum):
    SCRIPT = "script"
    ARCHIVE = "archive"


class Interpreter(str, Enum):
    """How a payload is started. ``auto`` picks by file extension on the worker's platform."""

    AUTO = "auto"
    SH = "sh"
    BASH = "bash"
    PYTHON = "python"
    POWERSHELL = "powershell"
    PWSH = "pwsh"
    CMD = "cmd"
    EXEC = "exec"  # run the file (or archive entrypoint) directly


class PayloadRef(Contract):
    """Where the bytes are, and what they must hash to."""

    container: Name
    blob: Name
    sha256: Digest
    size: int = Field(ge=0)
    kind: PayloadKind = PayloadKind.SCRIPT
    filename: Name = Field(description="original file name; its extension selects an interpreter")


class EnvVar(Contract):
    """An environment variable for the job. Secret values are never logged or echoed: they
    are masked at any length (the controller refuses to send one shorter than
    ``MIN_SECRET_CHARS``, schemas/redact.py; an older controller's still gets masked)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)
    value: str = Field(max_length=8192, repr=False)
    secret: bool = False


class Execution(Contract):
    interpreter: Interpreter = Interpreter.AUTO
    entrypoint: str | None = Field(
        default=None, max_length=512, description="path inside an archive to start"
    )
    args: list[str] = Field(default_factory=list, max_length=64)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    #: secret env sealed to the role's key (schemas/sealing.py): an agent that cannot open
    #: it must refuse the job, not run it without its secrets
    sealed_env: Annotated[Sealed | None, Since("1.4", critical=True)] = None

    def secret_values(self) -> list[str]:
        return [v.value for v in self.env if v.secret and v.value]


class Target(Contract):
    """``instance=None`` means any one instance of the role (the role queue)."""

    instance: Name | None = None

    @property
    def key(self) -> str:
        return "any" if self.instance is None else self.instance


class Signature(Contract):
    key_id: str = Field(max_length=64)
    algorithm: Literal["ed25519"] = "ed25519"
    value: str = Field(max_length=200, description="base64 signature of the canonical form")


class JobEnvelope(Contract):
    """A unit of work. ``action=reconcile`` asks the worker to apply its role's baseline now;
    ``action=cancel`` (on an instance queue) stops whatever of run ``cancel_run`` it is running
    and refuses that run's jobs from then on."""

    kind: Literal["job"] = "job"
    action: Literal["run", "reconcile", "cancel"] = "run"
    job_id: Id
    run_id: Id
    role: Name
    target: Target = Field(default_factory=Target)
    payload: PayloadRef | None = None
    execution: Execution = Field(default_factory=Execution)
    timeout_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    not_after: Timestamp | None = Field(
        default=None, description="delivery deadline: refused (expired) if claimed later"
    )
    max_attempts: int = Field(default=3, ge=1, le=100)
    created_at: Timestamp
    issuer: str = Field(default="rolecall", max_length=128)
    signature: Signature | None = None
    #: the run a ``cancel`` stops; an agent that does not know it must not ignore it
    cancel_run: Annotated[Id | None, Since("1.2", critical=True)] = None
    #: when this message was sent, stamped (and signed) per message by the sending process;
    #: a 1.4 agent refuses the job (``replayed``) unless it is within a small window of the
    #: queue's insertion time. Not critical: an older agent that ignores it is exactly as
    #: exposed to replays as before, and still bound by the default deadline (``not_after``,
    #: a 1.0 field); making it critical would refuse every job to every older agent at once.
    sent_at: Annotated[Timestamp | None, Since("1.4")] = None

    @model_validator(mode="after")
    def _run_needs_payload(self) -> JobEnvelope:
        if self.action == "run" and self.payload is None:
            raise ValueError("a 'run' job must name a payload")
        if (self.action == "cancel") != (self.cancel_run is not None):
            raise ValueError("a 'cancel' job, and only it, names the run it cancels")
        return self
