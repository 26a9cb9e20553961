"""The fleet as the controller sees it: instance records, listed with their blob metadata.

One List Blobs call per 5,000 instances of a role (no per-instance reads), which is what keeps
``--each`` over a thousand instances fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ContractError, NotFound
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceRecord, counts_of
from rolecall.schemas.version import PRE_RULES, Version
from rolecall.storage.clients import Storage

#: An instance is live while its last heartbeat is younger than this many intervals.
LIVENESS_INTERVALS = 2.5


@dataclass(frozen=True)
class InstanceSummary:
    role_key: str
    instance: str
    incarnation: str
    last_seen: datetime
    state: str
    baseline_version: int | None
    heartbeat_s: float
    #: what the agent runs and the contract it reads ("" and 1.0 for agents before the rules)
    agent_version: str = ""
    contract: Version = PRE_RULES
    #: what the agent says this incarnation spent: transactions by operation, errors by kind
    transactions: dict[str, int] = field(default_factory=dict, hash=False)
    storage_errors: dict[str, int] = field(default_factory=dict, hash=False)

    def live(self, now: datetime) -> bool:
        window = timedelta(seconds=self.heartbeat_s * LIVENESS_INTERVALS)
        return self.state != "stopped" and now - self.last_seen <= window

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "role": self.role_key,
            "instance": self.instance,
            "incarnation": self.incarnation,
            "last_seen": self.last_seen.isoformat(),
            "state": self.state,
            "baseline_version": self.baseline_version,
            "agent_version": self.agent_version or None,
            "contract": str(self.contract),
            "live": self.live(now),
        }

    def can_read(self, required: Version) -> bool:
        """Whether this instance's agent can act on a message that needs ``required``."""
        return self.contract.major == required.major and self.contract >= required


def list_instances(storage: Storage, role: str | None = None) -> list[InstanceSummary]:
    try:
        items = storage.list_blobs(
            storage.names.state_container, Names.instances_prefix(role), metadata=True
        )
    except NotFound:
        return []  # nothing has registered in this namespace yet
    out = []
    for item in items:
        meta = InstanceRecord.summary_from_metadata(item.metadata)
        try:
            out.append(
                InstanceSummary(
                    role_key=Names.role_key_of_instance_blob(item.name),
                    instance=meta["instance"],
                    incarnation=meta.get("incarnation", ""),
                    last_seen=datetime.fromisoformat(meta["lastseen"]),
                    state=meta.get("state", ""),
                    baseline_version=int(meta["baseline"]) if meta.get("baseline") else None,
                    heartbeat_s=float(meta.get("heartbeat", "600")),
                    agent_version=meta.get("agent", ""),
                    contract=_contract(meta.get("contract")),
                    transactions=counts_of(meta.get("tx")),
                    storage_errors=counts_of(meta.get("err")),
                )
            )
        except (KeyError, ValueError):
            continue  # a record written by something else; not ours to interpret
    return sorted(out, key=lambda s: (s.role_key, s.instance))


def _contract(raw: str | None) -> Version:
    try:
        return Version.parse(raw) if raw else PRE_RULES
    except ContractError:
        return PRE_RULES  # unreadable: assume the oldest, so nothing is sent it cannot read


def live_instances(storage: Storage, role: str, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    return [s.instance for s in list_instances(storage, role) if s.live(now)]
