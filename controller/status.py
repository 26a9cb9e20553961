"""Rendering run records for people (a Rich table), for programs (JSON) and for shell loops
(TSV).

``unreachable`` is shown, never stored: a target still queued for an instance that reads
``lost`` (or, for ``--any``, a role with no live instance) is displayed as unreachable, while
its record keeps ``queued``: if the instance comes back it runs the job and the run carries on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rolecall.controller.render import plural
from rolecall.schemas.runs import RunRecord, TargetResult, TargetState

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

UNREACHABLE = "unreachable"

STYLE = {
    TargetState.SUCCEEDED: "green",
    TargetState.REBOOT_REQUIRED: "green",
    TargetState.FAILED: "red",
    TargetState.TIMED_OUT: "red",
    TargetState.REJECTED: "red",
    TargetState.EXPIRED: "yellow",
    TargetState.CANCELLED: "yellow",
    TargetState.NOT_DISPATCHED: "yellow",
    TargetState.RETRYING: "magenta",
    TargetState.QUEUED: "cyan",
    TargetState.RUNNING: "blue",
    TargetState.PENDING: "dim",
}

#: target key -> why it is unreachable
Unreachable = Mapping[str, str]


def shown_state(key: str, t: TargetResult, unreachable: Unreachable) -> str:
    return UNREACHABLE if key in unreachable and not t.state.terminal else t.state.value


def summary(run: RunRecord, unreachable: Unreachable | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for k, t in run.targets.items():
        state = shown_state(k, t, unreachable or {})
        counts[state] = counts.get(state, 0) + 1
    return dict(sorted(counts.items()))


def run_json(run: RunRecord, unreachable: Unreachable | None = None) -> dict[str, Any]:
    unreachable = unreachable or {}
    return {
        "run_id": run.run_id,
        "role": run.role,
        "mode": run.mode.value,
        "state": run.state.value,
        "description": run.description,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "cancelled": run.cancelled,
        "summary": summary(run, unreachable),
        "targets": [target_json(k, t, unreachable) for k, t in run.targets.items()],
    }


def target_json(key: str, t: TargetResult, unreachable: Unreachable) -> dict[str, Any]:
    return {
        "target": t.target,
        "instance": t.instance or t.target,
        "state": shown_state(key, t, unreachable),
        "recorded_state": t.state.value,
        "unreachable": unreachable.get(key) if not t.state.terminal else None,
        "exit_code": t.exit_code,
        "attempts": t.attempts,
        "incarnation": t.incarnation,
        "duration_s": duration(t),
        "finished_at": _iso(t.finished_at),
        "reason": t.reason,
        "stdout_tail": t.stdout_tail,
        "stderr_tail": t.stderr_tail,
        "log_blob": t.log_blob,
        "log_cut_bytes": t.log_cut_bytes,
        "steps": {str(k): v.outcome.value for k, v in sorted(t.steps.items())} or None,
    }


def duration(t: TargetResult) -> float | None:
    """A baseline target took as long as its steps did, not as long as the step it shows."""
    steps = [s.duration_s for s in t.steps.values() if s.duration_s is not None]
    return sum(steps) if steps else t.duration_s


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def tail_line(t: TargetResult, width: int = 60) -> str:
    text = (t.stderr_tail if t.state.error and t.stderr_tail.strip() else t.stdout_tail) or (
        t.reason or ""
    )
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:width] if lines else ""


def _cells(key: str, t: TargetResult, unreachable: Unreachable) -> list[str]:
    state = shown_state(key, t, unreachable)
    if t.steps_total:
        ok = sum(1 for s in t.steps.values() if s.outcome.ok)
        state += f" ({ok}/{t.steps_total} steps)"
    took = duration(t)
    why = unreachable.get(key, "") if state.startswith(UNREACHABLE) else tail_line(t)
    return [
        t.target if t.target != "any" else f"any → {t.instance or '?'}", state,
        "" if t.exit_code is None else str(t.exit_code), str(t.attempts or ""),
        "" if took is None else f"{took:.1f}s", why,
    ]  # fmt: skip


def run_rows(run: RunRecord, unreachable: Unreachable | None = None) -> list[list[str]]:
    """One row per target: instance, state, exit, attempts, duration, output (for TSV)."""
    return [_cells(k, t, unreachable or {}) for k, t in run.targets.items()]


def run_table(run: RunRecord, unreachable: Unreachable | None = None) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"{run.run_id}  [dim]{run.mode.value} on {escape(run.role)}: "
        f"{escape(run.description)}[/]",
        title_justify="left",
    )
    for col in ("instance", "state", "exit", "attempts", "duration", "output"):
        table.add_column(col, no_wrap=col not in ("output", "state"), overflow="fold")
    unreachable = unreachable or {}
    for k, t in run.targets.items():
        cells = _cells(k, t, unreachable)
        style = "red" if cells[1].startswith(UNREACHABLE) else STYLE.get(t.state, "")
        cells[1] = f"[{style}]{escape(cells[1])}[/]" if style else escape(cells[1])
        table.add_row(escape(cells[0]), cells[1], *(escape(c) for c in cells[2:]))
    return table


def print_run(run: RunRecord, console: Console, unreachable: Unreachable | None = None) -> None:
    console.print(run_table(run, unreachable))
    parts = ", ".join(f"{n} {s}" for s, n in summary(run, unreachable).items())
    console.print(
        f"[bold]{run.state.value}[/]: {plural(len(run.targets), 'target')}"
        + (f" ({parts})" if parts else ""),
        highlight=False,
    )
