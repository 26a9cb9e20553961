"""Documents kept in the state container: instance records, run records, poison records.

Run records are written only by the controller side (ETag-guarded, so several controllers
are safe); an instance record is written only by its own worker (it is that worker's
heartbeat: one blob put, no controller needed for liveness).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, ClassVar, Literal
from urllib.parse import quote, unquote

from pydantic import Field

from rolecall.schemas.base import TAIL_CHARS, Contract, Name, Timestamp
from rolecall.schemas.instances import BaselineApplied, BaselineFailure, Holder, JobDone
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
    #: contract 1.4 (schemas/instances.py): who holds the name, what fails, what it did
    holder: Annotated[Holder | None, Since("1.4")] = None
    baseline_failure: Annotated[BaselineFailure | None, Since("1.4")] = None
    jobs: Annotated[list[JobDone], Since("1.4")] = Field(default_factory=list)
    baselines: Annotated[list[BaselineApplied], Since("1.4")] = Field(default_factory=list)
    #: this incarnation's storage transactions by operation and failed attempts by kind
    #: (storage/meter.py), so the controller's /metrics shows what the fleet costs
    transactions: Annotated[dict[str, int], Since("1.4")] = Field(default_factory=dict)
    storage_errors: Annotated[dict[str, int], Since("1.4")] = Field(default_factory=dict)
    #: the highest baseline version this instance took (worker/forward.py): a reimaged
    #: incarnation recovers it from here and refuses older baselines
    baseline_high_water: Annotated[int | None, Since("1.4")] = None
    #: the agent runs unsigned jobs (``--accept-unsigned``, no trusted key): development only
    accepts_unsigned: Annotated[bool | None, Since("1.4")] = None

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
            **(
                {"bfail": quote(self.baseline_failure.model_dump_json(), safe="")}
                if self.baseline_failure is not None
                else {}
            ),
            **({"tx": counts_text(self.transactions)} if self.transactions else {}),
            **({"err": counts_text(self.storage_errors)} if self.storage_errors else {}),
            **({"bhw": str(self.baseline_high_water)} if self.baseline_high_water else {}),
        }

    @staticmethod
    def summary_from_metadata(meta: dict[str, str]) -> dict[str, str]:
        out = dict(meta)
        out["instance"] = unquote(meta.get("instance", ""))
        if "bfail" in meta:
            out["bfail"] = unquote(meta["bfail"])
        return out


_COUNTED = re.compile(r"[a-z][a-z_]{0,23}(\.[a-z_]{1,24})?")
#: a record's metadata carries at most this many counts of each kind
MAX_COUNTS = 32


def counts_text(counts: dict[str, int]) -> str:
    """``blob.put:12,queue.receive:340``: counts in blob metadata (ASCII, one header)."""
    return ",".join(f"{k}:{n}" for k, n in sorted(counts.items())[:MAX_COUNTS])


def counts_of(text: str | None) -> dict[str, int]:
    """The counts an instance put in its record's metadata. An instance may be hostile: only
    names shaped like an operation or an error kind, and plain numbers, are taken (they end
    up as metric labels, so they must stay few and tame)."""
    out: dict[str, int] = {}
    for part in (text or "").split(",")[:MAX_COUNTS]:
        name, _, n = part.partition(":")
        if _COUNTED.fullmatch(name) and n.isascii() and n.isdigit() and len(n) <= 15:
            out[name] = int(n)
    return out


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
