"""What an instance record says beyond its heartbeat (contract 1.4): who holds the name, the
baseline step that fails, and a short history of what the instance did.

All of it is written by the instance itself, so all of it is the instance's own account: the
controller shows it (``rolecall instances``, ``rolecall history``) and decides nothing on it
except liveness. Lists are bounded so a record stays one small blob put.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from rolecall.schemas.base import Contract, Name, Timestamp


class Holder(Contract):
    """The agent process that holds an instance name: enough for its successor on the same
    machine to tell a dead predecessor (take over at once) from a live second agent (refuse)."""

    host: str = Field(max_length=256)
    pid: int
    #: the operating system's boot: Linux's boot id, elsewhere its boot time
    os_boot: str | None = Field(default=None, max_length=64)


class BaselineFailure(Contract):
    """Why this incarnation has not applied its role's baseline yet."""

    version: int | None = None
    #: the failing step's index; None when the baseline itself could not be read or was refused
    step: int | None = None
    name: str = Field(default="", max_length=256)
    outcome: str = Field(max_length=64)
    exit_code: int | None = None
    reason: str = Field(default="", max_length=512)
    at: Timestamp

    def describe(self) -> str:
        where = f"step {self.step} {self.name!r}" if self.step is not None else "baseline"
        why = f"exit {self.exit_code}" if self.exit_code is not None else self.reason
        version = f"v{self.version} " if self.version is not None else ""
        return f"{version}{where} {self.outcome}" + (f" ({why})" if why else "")


class JobDone(Contract):
    """One job attempt this instance reported."""

    run_id: Name
    job_id: Name
    outcome: str = Field(max_length=64)
    exit_code: int | None = None
    attempt: int = 1
    finished_at: Timestamp
    incarnation: Name

    LIMIT: ClassVar[int] = 50


class BaselineApplied(Contract):
    """A baseline version an incarnation of this instance finished applying."""

    version: int
    incarnation: Name
    at: Timestamp

    LIMIT: ClassVar[int] = 20
