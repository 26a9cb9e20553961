"""Rendering run records for people (a Rich table) and for programs (JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from rolecall.schemas.runs import RunRecord, TargetResult, TargetState

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


def summary(run: RunRecord) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in run.targets.values():
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    return dict(sorted(counts.items()))


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "role": run.role,
        "mode": run.mode.value,
        "state": run.state.value,
        "description": run.description,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "cancelled": run.cancelled,
        "summary": summary(run),
        "targets": [target_json(t) for t in run.targets.values()],
    }


def target_json(t: TargetResult) -> dict[str, Any]:
    return {
        "target": t.target,
        "instance": t.instance or t.target,
        "state": t.state.value,
        "exit_code": t.exit_code,
        "attempts": t.attempts,
        "incarnation": t.incarnation,
        "duration_s": t.duration_s,
        "finished_at": _iso(t.finished_at),
        "reason": t.reason,
        "stdout_tail": t.stdout_tail,
        "stderr_tail": t.stderr_tail,
        "log_blob": t.log_blob,
        "log_cut_bytes": t.log_cut_bytes,
        "steps": {str(k): v.outcome.value for k, v in sorted(t.steps.items())} or None,
    }


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def _tail_line(t: TargetResult) -> str:
    text = (t.stderr_tail if t.state.error and t.stderr_tail.strip() else t.stdout_tail) or (
        t.reason or ""
    )
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:60] if lines else ""


def run_table(run: RunRecord) -> Table:
    table = Table(
        title=f"{run.run_id}  [dim]{run.mode.value} on {run.role}: {run.description}[/]",
        title_justify="left",
    )
    for col in ("instance", "state", "exit", "attempts", "duration", "output"):
        table.add_column(col, no_wrap=col != "output", overflow="fold")
    for t in run.targets.values():
        who = t.target if t.target != "any" else f"any → {t.instance or '?'}"
        state = t.state.value
        if t.steps_total:
            ok = sum(1 for s in t.steps.values() if s.outcome.ok)
            state += f" ({ok}/{t.steps_total} steps)"
        table.add_row(
            who,
            f"[{STYLE.get(t.state, '')}]{state}[/]",
            "" if t.exit_code is None else str(t.exit_code),
            str(t.attempts or ""),
            "" if t.duration_s is None else f"{t.duration_s:.1f}s",
            _tail_line(t),
        )
    return table


def print_run(run: RunRecord, console: Console) -> None:
    console.print(run_table(run))
    parts = ", ".join(f"{n} {s}" for s, n in summary(run).items())
    console.print(f"[bold]{run.state.value}[/]: {len(run.targets)} targets ({parts})")
