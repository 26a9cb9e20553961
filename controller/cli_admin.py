"""Operators' commands for baselines, poison queues and storage names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rolecall.controller.context import Unsigned, ctx_of, emit_json, expected_errors

Opt = typer.Option
Output = Annotated[str, Opt("--output", "-o", help="table or json.")]

baseline_app = typer.Typer(help="Publish and show role baselines.", no_args_is_help=True)
poison_app = typer.Typer(help="Inspect, requeue and purge poisoned messages.", no_args_is_help=True)


@baseline_app.command("set")
@expected_errors
def baseline_set(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument()],
    file: Annotated[Path, typer.Argument(help="Baseline YAML or JSON (see docs/operators.md).")],
    if_version: Annotated[
        int | None, Opt(help="Fail unless the current version is this (0: none yet).")
    ] = None,
    notify: Annotated[bool, Opt(help="Tell live instances to apply it now.")] = True,
    unsigned: Unsigned = False,
) -> None:
    """Publish a new baseline version for ROLE and notify its live instances.

    Example: rolecall baseline set web examples/web/baseline.yaml
    """
    from rolecall.controller.baselines import publish_baseline

    c = ctx_of(ctx)
    baseline, run = publish_baseline(
        c.storage, role, file, issuer=c.settings.issuer, expected_version=if_version,
        signer=c.job_signer(unsigned), notify=notify,
    )  # fmt: skip
    typer.echo(
        f"baseline {role} v{baseline.version}: {len(baseline.steps)} steps; "
        f"{len(run.targets)} live instances notified; follow with `rolecall status {run.run_id}`"
    )


@baseline_app.command("show")
@expected_errors
def baseline_show(
    ctx: typer.Context, role: Annotated[str, typer.Argument()], output: Output = "table"
) -> None:
    """Show ROLE's current baseline."""
    from rolecall.controller.baselines import current_baseline
    from rolecall.schemas.errors import UnknownRole

    c = ctx_of(ctx)
    baseline, etag = current_baseline(c.storage, role)
    if baseline is None:
        raise UnknownRole(f"no baseline published for role {role!r}")
    if output == "json":
        emit_json({**baseline.model_dump(mode="json"), "etag": etag})
        return
    c.console.print(f"[bold]{role}[/] baseline v{baseline.version} by {baseline.issuer}, "
                    f"{baseline.updated_at:%Y-%m-%d %H:%M:%S}Z")  # fmt: skip
    for i, s in enumerate(baseline.steps):
        c.console.print(
            f"  {i}. {s.name}: {s.payload.filename} sha256:{s.payload.sha256[:12]} "
            f"timeout {s.timeout_s:g}s reboot={s.reboot.value}"
        )


@poison_app.command("list")
@expected_errors
def poison_list(
    ctx: typer.Context,
    role: Annotated[str | None, typer.Argument(help="Only this role's queues.")] = None,
    output: Output = "table",
) -> None:
    """List poisoned messages with their reasons."""
    from rich.table import Table

    from rolecall.controller.poison import list_poison, masked

    c = ctx_of(ctx)
    entries = list_poison(c.storage, role)
    if output == "json":
        emit_json(
            [
                {"queue": e.queue, "message_id": e.message_id,
                 "record": masked(e.record) if e.record else None}
                for e in entries
            ]
        )  # fmt: skip
        return
    table = Table()
    for col in ("queue", "message id", "reason", "job", "error"):
        table.add_column(col, overflow="fold")
    for e in entries:
        r = e.record
        table.add_row(
            e.queue, e.message_id, r.reason if r else "?", (r.job_id or "") if r else "",
            (r.error[:80] if r else "unreadable poison record"),
        )  # fmt: skip
    c.console.print(table)


def _find(ctx: typer.Context, message_id: str):  # type: ignore[no-untyped-def]
    from rolecall.controller.poison import list_poison
    from rolecall.schemas.errors import NotFound

    for e in list_poison(ctx_of(ctx).storage):
        if e.message_id == message_id:
            return e
    raise NotFound(f"no poisoned message {message_id} (only the first 32 per queue are visible)")


@poison_app.command("show")
@expected_errors
def poison_show(ctx: typer.Context, message_id: Annotated[str, typer.Argument()]) -> None:
    """Show one poisoned message: reason, error, last output and the original."""
    from rolecall.controller.poison import masked

    e = _find(ctx, message_id)
    emit_json({"queue": e.queue, "message_id": e.message_id,
               "record": masked(e.record) if e.record else e.raw})  # fmt: skip


@poison_app.command("requeue")
@expected_errors
def poison_requeue(
    ctx: typer.Context,
    message_id: Annotated[str | None, typer.Argument(help="Message id (omit with --all).")] = None,
    queue: Annotated[str | None, Opt(help="Poison queue (found from the id if omitted).")] = None,
    all_: Annotated[bool, Opt("--all", help="Every message in --queue.")] = False,
) -> None:
    """Send a poisoned message back to its source queue with its attempt count reset."""
    from rolecall.controller.poison import requeue

    q = _queue(ctx, message_id, queue, all_)
    n = requeue(ctx_of(ctx).storage, q, None if all_ else message_id)
    typer.echo(f"requeued {n} message(s) from {q}")


@poison_app.command("purge")
@expected_errors
def poison_purge(
    ctx: typer.Context,
    message_id: Annotated[str | None, typer.Argument()] = None,
    queue: Annotated[str | None, Opt(help="Poison queue.")] = None,
    all_: Annotated[bool, Opt("--all", help="Every message in --queue.")] = False,
) -> None:
    """Delete poisoned messages for good."""
    from rolecall.controller.poison import purge

    q = _queue(ctx, message_id, queue, all_)
    n = purge(ctx_of(ctx).storage, q, None if all_ else message_id)
    typer.echo(f"purged {n} message(s) from {q}")


def _queue(ctx: typer.Context, message_id: str | None, queue: str | None, all_: bool) -> str:
    from rolecall.schemas.errors import ConfigError

    if all_:
        if queue is None:
            raise ConfigError("--all needs --queue")
        return queue
    if message_id is None:
        raise ConfigError("give a message id, or --all with --queue")
    return queue or str(_find(ctx, message_id).queue)


@expected_errors
def names(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument()],
    instance: Annotated[str | None, typer.Argument()] = None,
    output: Output = "table",
) -> None:
    """Print the storage names for a role (and instance), for templates and scripts."""
    n = ctx_of(ctx).settings.names  # flag, ROLECALL_NAMESPACE or the config file; no account
    data = {
        "namespace": n.namespace,
        "role_queue": n.role_queue(role),
        "role_poison_queue": n.poison_queue(n.role_queue(role)),
        "results_container": n.results_container(role),
        "results_poison_queue": n.poison_queue(n.results_container(role)),
        "events_queue": n.events_queue,
        "events_poison_queue": n.poison_queue(n.events_queue),
        "payloads_container": n.payloads_container,
        "state_container": n.state_container,
        "logs_container": n.logs_container,
        "baseline_blob": n.baseline_blob(role),
    }
    if instance:
        data |= {
            "instance_queue": n.instance_queue(instance),
            "instance_poison_queue": n.poison_queue(n.instance_queue(instance)),
            "instance_blob": n.instance_blob(role, instance),
        }
    if output == "json":
        emit_json(data)
    else:
        for k, v in data.items():
            typer.echo(f"{k:22} {' '.join(v) if isinstance(v, list) else v}")
