"""``rolecall history INSTANCE``: one instance's life as a timeline.

Two sources, two reads: the incarnations the controller folded from hello events (the
``history/`` document: boots and reimages) and the instance's own record, which carries the
baseline versions its incarnations applied, the step that fails now, and its recent job
attempts (schemas/instances.py; the agent keeps them across restarts and reimages). The
record is the instance's own account, so its text is shown, never interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rolecall.controller.fleet import InstanceSummary, list_instances
from rolecall.schemas.codec import decode_document
from rolecall.schemas.errors import ContractError, NotFound, UnknownInstance
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceHistory, InstanceRecord
from rolecall.schemas.version import SUPPORTED_MAJORS
from rolecall.storage.clients import Storage
from rolecall.storage.documents import read_document


@dataclass(frozen=True)
class Event:
    at: datetime
    what: str
    detail: str
    incarnation: str

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "what": self.what, "detail": self.detail,
                "incarnation": self.incarnation}  # fmt: skip


@dataclass(frozen=True)
class Life:
    summary: InstanceSummary
    record: InstanceRecord | None
    events: list[Event]


def find(storage: Storage, instance: str, role: str | None) -> InstanceSummary:
    """The instance by name (its role found by listing when not given)."""
    found = [s for s in list_instances(storage, role) if s.instance == instance]
    if not found:
        where = f" in role {role!r}" if role else ""
        raise UnknownInstance(
            f"no instance {instance!r} has registered{where}; see `rolecall instances`"
        )
    if len(found) > 1:
        roles = ", ".join(s.role_key for s in found)
        raise UnknownInstance(f"instance {instance!r} is in several roles ({roles}): add --role")
    return found[0]


def life(storage: Storage, summary: InstanceSummary, limit: int) -> Life:
    container = storage.names.state_container
    record = _record(storage, summary)
    role = record.role if record is not None else summary.role_key
    history = read_document(storage, container, Names.history_blob(role, summary.instance),
                            InstanceHistory)  # fmt: skip
    events = [
        Event(i.boot_time, "booted", f"agent {i.agent_version or '?'}", i.incarnation)
        for i in (history[0].incarnations if history else [])
    ]
    if record is not None:
        events += [Event(b.at, "baseline applied", f"v{b.version}", b.incarnation)
                   for b in record.baselines]  # fmt: skip
        events += [Event(j.finished_at, "job", _job(j.run_id, j.outcome, j.exit_code, j.attempt),
                         j.incarnation) for j in record.jobs]  # fmt: skip
        if record.baseline_failure is not None:
            f = record.baseline_failure
            events.append(Event(f.at, "baseline failing", f.describe(), record.incarnation))
    events.sort(key=lambda e: e.at)
    return Life(summary, record, events[-limit:] if limit else events)


def _job(run_id: str, outcome: str, code: int | None, attempt: int) -> str:
    exit_ = f", exit {code}" if code is not None else ""
    return f"{run_id}: {outcome}{exit_}" + (f" (attempt {attempt})" if attempt > 1 else "")


def _record(storage: Storage, s: InstanceSummary) -> InstanceRecord | None:
    try:
        raw = storage.get_blob(storage.names.state_container, s.blob).data
        return decode_document(raw, InstanceRecord, SUPPORTED_MAJORS)
    except (NotFound, ContractError):
        return None
