"""Operators' commands about the fleet: instances, and one instance's history."""

from __future__ import annotations

from typing import Annotated

import typer

from rolecall.controller.context import ctx_of, emit_json, expected_errors
from rolecall.controller.render import Format, Output

Opt = typer.Option
RoleOpt = Annotated[str | None, Opt(metavar="ROLE", help="Only this role.")]

LIVENESS_STYLE = {"live": "green", "lost": "red", "stopped": "yellow"}


def _ago(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s}s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


@expected_errors
def instances(ctx: typer.Context, role: RoleOpt = None, output: Output = Format.TABLE) -> None:
    """List instances: liveness, state, baseline applied (or the step that fails), agent.

    Liveness: `live` (heard from within 2.5 heartbeats), `lost` (silent longer: dead, cut
    off or rebooting; `--each` skips it), `stopped` (its agent shut down cleanly).

    \b
    Examples:
      rolecall instances
      rolecall instances --role web -o json
      rolecall instances -o tsv | awk -F'\\t' '$3 == "lost" {print $2}'
    """
    from rolecall.controller.fleet import list_instances
    from rolecall.controller.render import print_table, print_tsv, styled
    from rolecall.schemas.base import utcnow

    c = ctx_of(ctx)
    now = utcnow()
    rows = list_instances(c.storage, role)
    if output is Format.JSON:
        emit_json([r.as_dict(now) for r in rows])
        return
    if output is Format.TSV:
        print_tsv([[r.role_key, r.instance, r.liveness(now), r.state, r.baseline_text(),
                    r.last_seen.isoformat(), r.agent_version, str(r.contract), r.incarnation]
                   for r in rows])  # fmt: skip
        return
    headers = ("role", "instance", "liveness", "state", "baseline", "last heartbeat", "agent",
               "incarnation")  # fmt: skip
    print_table(c.console, headers, [
        [r.role_key, r.instance, styled(r.liveness(now), LIVENESS_STYLE[r.liveness(now)]),
         r.state, styled(r.baseline_text(), "red" if r.baseline_failure else ""),
         _ago((now - r.last_seen).total_seconds()),
         f"{r.agent_version or '?'} (contract {r.contract})", r.incarnation]
        for r in rows
    ], empty="no instances registered" + (f" in role {role}" if role else ""))  # fmt: skip


@expected_errors
def history(
    ctx: typer.Context,
    instance: Annotated[str, typer.Argument(metavar="INSTANCE", help="Instance name.")],
    role: RoleOpt = None,
    limit: Annotated[int, Opt(metavar="N", help="Show the last N events (0: all).")] = 30,
    output: Output = Format.TABLE,
) -> None:
    """Show an instance's history: boots and reimages (incarnations), the baseline versions
    each applied, its recent jobs, and the baseline step failing now.

    Jobs and baselines are as the instance reports them in its record.

    \b
    Examples:
      rolecall history web-0
      rolecall history WebRole_IN_0 --role web -o json
    """
    from rolecall.controller.fold import EventFolder
    from rolecall.controller.instance_history import find, life
    from rolecall.controller.render import print_table, print_tsv
    from rolecall.schemas.base import utcnow

    c = ctx_of(ctx)
    EventFolder(c.storage).fold_all()  # hellos not folded yet are boots not shown yet
    s = find(c.storage, instance, role)
    lived = life(c.storage, s, limit)
    now = utcnow()
    if output is Format.JSON:
        emit_json({**s.as_dict(now), "events": [e.as_dict() for e in lived.events]})
        return
    rows = [[e.at.isoformat(timespec="seconds"), e.what, e.detail, e.incarnation]
            for e in lived.events]  # fmt: skip
    if output is Format.TSV:
        print_tsv(rows)
        return
    c.console.print(
        f"{s.instance} (role {s.role_key}): {s.liveness(now)}, {s.state}, baseline "
        f"{s.baseline_text() or 'none'}, agent {s.agent_version or '?'}", markup=False,
    )  # fmt: skip
    print_table(c.console, ("when", "what", "detail", "incarnation"), rows,
                empty="no history recorded yet")  # fmt: skip
