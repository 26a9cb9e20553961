"""The fleet as the controller sees it: instance records, listed with their blob metadata.

One List Blobs call per 5,000 instances of a role (no per-instance reads), which is what keeps
``--each`` over a thousand instances fast.

Liveness, from the record's last write by the storage service's clock (an instance's own
clock may be wrong, and a hostile one could claim any time):

* ``live``: written within 2.5 of its heartbeats (60 s by default: 150 s);
* ``lost``: silent for longer. Dead, cut off, or rebooting: nothing is sent to it by
  ``--each``, and ``wait`` reports jobs queued for it as ``unreachable``;
* ``stopped``: its agent said goodbye (a clean shutdown).

A dead instance therefore reads ``lost`` within 2.5 heartbeats of its last one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ContractError, NotFound
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceRecord, counts_of
from rolecall.schemas.version import PRE_RULES, Version
from rolecall.storage.clients import BlobItem, Storage

#: An instance is live while its last heartbeat is younger than this many intervals.
LIVENESS_INTERVALS = 2.5

LIVE, LOST, STOPPED = "live", "lost", "stopped"


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
    #: the failing baseline step, as the instance reports it (contract 1.2)
    baseline_failure: dict[str, Any] | None = None
    #: where the record is, for the commands that read it whole (``rolecall history``)
    blob: str = ""
    #: what the agent says this incarnation spent: transactions by operation, errors by kind
    transactions: dict[str, int] = field(default_factory=dict, hash=False)
    storage_errors: dict[str, int] = field(default_factory=dict, hash=False)
    #: the highest baseline version the instance took (a reimaged one: before the reimage)
    baseline_high_water: int | None = None

    def liveness(self, now: datetime) -> str:
        if self.state == "stopped":
            return STOPPED
        window = timedelta(seconds=self.heartbeat_s * LIVENESS_INTERVALS)
        return LIVE if now - self.last_seen <= window else LOST

    def live(self, now: datetime) -> bool:
        return self.liveness(now) == LIVE

    def baseline_text(self) -> str:
        """``v3``, or where the baseline fails: ``v4 step 1 'site' failed (exit 2)``."""
        done = "" if self.baseline_version is None else f"v{self.baseline_version}"
        f = self.baseline_failure
        if not f:
            return done
        where = f"step {f.get('step')} {f.get('name', '')!r}" if f.get("step") is not None else ""
        why = f"exit {f['exit_code']}" if f.get("exit_code") is not None else f.get("reason", "")
        version = f"v{f['version']} " if f.get("version") is not None else ""
        failing = f"{version}{where} {f.get('outcome', 'failed')}".strip()
        return (f"{done}; " if done else "") + failing + (f" ({why})" if why else "")

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "role": self.role_key,
            "instance": self.instance,
            "incarnation": self.incarnation,
            "last_seen": self.last_seen.isoformat(),
            "state": self.state,
            "baseline_version": self.baseline_version,
            "baseline_high_water": self.baseline_high_water,
            "baseline_failure": self.baseline_failure,
            "agent_version": self.agent_version or None,
            "contract": str(self.contract),
            "heartbeat_s": self.heartbeat_s,
            "liveness": self.liveness(now),
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
        try:
            out.append(_summary(item))
        except (KeyError, ValueError):
            continue  # a record written by something else; not ours to interpret
    return sorted(out, key=lambda s: (s.role_key, s.instance))


def _summary(item: BlobItem) -> InstanceSummary:
    meta = InstanceRecord.summary_from_metadata(item.metadata)
    claimed = datetime.fromisoformat(meta["lastseen"])
    return InstanceSummary(
        role_key=Names.role_key_of_instance_blob(item.name),
        instance=meta["instance"],
        incarnation=meta.get("incarnation", ""),
        last_seen=item.last_modified or claimed,
        state=meta.get("state", ""),
        baseline_version=int(meta["baseline"]) if meta.get("baseline") else None,
        heartbeat_s=float(meta.get("heartbeat", "600")),
        agent_version=meta.get("agent", ""),
        contract=_contract(meta.get("contract")),
        baseline_failure=_failure(meta.get("bfail")),
        blob=item.name,
        transactions=counts_of(meta.get("tx")),
        storage_errors=counts_of(meta.get("err")),
        baseline_high_water=int(meta["bhw"]) if meta.get("bhw") else None,
    )


def _failure(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _contract(raw: str | None) -> Version:
    try:
        return Version.parse(raw) if raw else PRE_RULES
    except ContractError:
        return PRE_RULES  # unreadable: assume the oldest, so nothing is sent it cannot read


def live_instances(storage: Storage, role: str, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    return [s.instance for s in list_instances(storage, role) if s.live(now)]
