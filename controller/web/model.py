"""What the dashboard knows about the fleet, runs and poison, read through the same controller
modules the CLI uses (fleet.py, status.py, poison.py, results.py), in small functions: when
those modules change, this is the one place the dashboard follows them.

Nothing here imports a web library; ``metrics.py`` and the pages both read these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rolecall.controller.fleet import InstanceSummary, list_instances
from rolecall.controller.poison import masked
from rolecall.controller.status import summary
from rolecall.schemas.codec import decode_message
from rolecall.schemas.errors import ContractError
from rolecall.schemas.records import PoisonRecord
from rolecall.schemas.runs import RunRecord, RunState, TargetResult
from rolecall.storage.clients import Message, Storage

#: an instance's status on the fleet page and in /metrics, in the order they are shown
STATUSES = ("ready", "configuring", "booting", "reboot_pending", "failed", "stale", "lost",
            "stopped")  # fmt: skip
FINISHED = (RunState.SUCCEEDED.value, RunState.FAILED.value, RunState.CANCELLED.value)


# --- instances -----------------------------------------------------------------------------


def instances(storage: Storage) -> list[InstanceSummary]:
    """Every instance record (one List Blobs call per 5,000), as ``rolecall instances``."""
    return list_instances(storage)


def liveness(s: InstanceSummary, now: datetime) -> str:
    """``live``, ``lost`` (silent past 2.5 heartbeats) or ``stopped`` (said goodbye)."""
    if s.state == "stopped":
        return "stopped"
    return "live" if s.live(now) else "lost"


def instance_json(s: InstanceSummary, now: datetime) -> dict[str, Any]:
    """The instance as ``rolecall instances -o json`` shows it."""
    return s.as_dict(now)


@dataclass(frozen=True)
class Cell:
    """One instance on the fleet page."""

    instance: str
    status: str
    state: str
    baseline: int | None
    last_seen: datetime
    incarnation: str
    agent: str
    failure: str = ""


def cell(s: InstanceSummary, current: int | None, failure: str | None, now: datetime) -> Cell:
    """Gone quiet first (``lost``/``stopped``), then the baseline: failing a step of it
    (``failed``), ready on an older version (``stale``); otherwise what the agent says."""
    status = liveness(s, now)
    if status == "live":
        done = s.state == "ready" and (current is None or s.baseline_version == current)
        if failure and not done:
            status = "failed"
        elif s.state == "ready" and not done:
            status = "stale"
        else:
            status = s.state if s.state in STATUSES else "booting"
    return Cell(s.instance, status, s.state, s.baseline_version, s.last_seen, s.incarnation,
                s.agent_version, failure or "")  # fmt: skip


# --- runs ----------------------------------------------------------------------------------


def run_counts(view: RunRecord) -> dict[str, int]:
    """Targets by state, as ``rolecall status -o json`` sums them."""
    return summary(view)


def tail_line(t: TargetResult, width: int = 160) -> str:
    """The line of output that says most: the last of stderr for a failure, else of stdout."""
    text = (t.stderr_tail if t.state.error and t.stderr_tail.strip() else t.stdout_tail) or (
        t.reason or ""
    )
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:width] if lines else ""


def step_failure(t: TargetResult) -> str:
    """Where a baseline target fails: ``step 2 failed (exit 1)``."""
    failed = [(i, s) for i, s in sorted(t.steps.items()) if not s.outcome.ok]
    if not failed:
        return t.state.value + (f" (exit {t.exit_code})" if t.exit_code is not None else "")
    i, s = failed[0]
    code = f" (exit {s.exit_code})" if s.exit_code is not None else ""
    return f"step {i} {s.outcome.value}{code}"


def baseline_failures(view: RunRecord | None) -> dict[str, str]:
    """Instance -> where its baseline fails, from the role's current baseline run (what
    ``rolecall status baseline-ROLE-vN`` shows)."""
    if view is None:
        return {}
    return {
        (t.instance or key): step_failure(t) for key, t in view.targets.items() if t.state.error
    }


# --- poison --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoisonEntry:
    message_id: str
    inserted_on: datetime | None
    record: dict[str, Any] | None  # masked for display; None: not a poison record at all
    raw: str = ""


@dataclass
class PoisonQueue:
    queue: str
    depth: int
    entries: list[PoisonEntry] = field(default_factory=list)


def poison_entries(messages: list[Message], newest: int) -> list[PoisonEntry]:
    """The newest ``newest`` of what a peek returned, decoded, secrets masked. A queue hands
    over its oldest messages first, so of a long queue these are the newest of its first 32."""
    out = []
    for m in messages:
        try:
            record: dict[str, Any] | None = masked(decode_message(m.content, PoisonRecord))
        except ContractError:
            record = None
        out.append(PoisonEntry(m.id, m.inserted_on, record, m.content[:200]))
    out.sort(key=lambda e: str((e.record or {}).get("poisoned_at") or e.inserted_on), reverse=True)
    return out[:newest]
