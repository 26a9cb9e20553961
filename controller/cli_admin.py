"""Operators' commands for baselines, poison queues and storage names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rolecall.controller.context import (
    EXIT_FAILED,
    Unsigned,
    ctx_of,
    emit_json,
    expected_errors,
)
from rolecall.controller.render import Format, Output

Opt = typer.Option
Role = Annotated[str, typer.Argument(metavar="ROLE", help="Role name.")]
MessageId = Annotated[str, typer.Argument(metavar="MESSAGE_ID", help="From `poison list`.")]

baseline_app = typer.Typer(help="Publish and show role baselines.", no_args_is_help=True)
poison_app = typer.Typer(help="Inspect, requeue and purge poisoned messages.", no_args_is_help=True)


@baseline_app.command("set")
@expected_errors
def baseline_set(
    ctx: typer.Context,
    role: Role,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="Baseline YAML or JSON (docs/operators.md).")
    ],
    if_version: Annotated[
        int | None, Opt(metavar="N", help="Fail unless the current version is this (0: none).")
    ] = None,
    notify: Annotated[bool, Opt(help="Tell live instances to apply it now.")] = True,
    rollback: Annotated[
        bool,
        Opt(
            "--rollback",
            help="Instances took higher versions than the current one (the "
            "baseline was deleted or an old copy put back): have them take this one anyway.",
        ),
    ] = False,
    unsigned: Unsigned = False,
) -> None:
    """Publish a new baseline version for ROLE and notify its live instances.

    \b
    Examples:
      rolecall baseline set web web/baseline.yaml
      rolecall baseline set web web/baseline.yaml --if-version 3 --no-notify
      rolecall baseline set web web/baseline.yaml --rollback
    """
    from rolecall.controller.baselines import publish_baseline
    from rolecall.controller.render import plural

    c = ctx_of(ctx)
    baseline, run = publish_baseline(
        c.storage, role, file, issuer=c.settings.issuer, expected_version=if_version,
        signer=c.job_signer(unsigned), notify=notify, rollback=rollback,
    )  # fmt: skip
    typer.echo(
        f"baseline {role} v{baseline.version}: {plural(len(baseline.steps), 'step')}; "
        f"{plural(len(run.targets), 'live instance')} notified; "
        f"follow with `rolecall wait {run.run_id}`"
    )


@baseline_app.command("show")
@expected_errors
def baseline_show(ctx: typer.Context, role: Role, output: Output = Format.TABLE) -> None:
    """Show ROLE's current baseline: version, who published it, and its steps.

    \b
    Examples:
      rolecall baseline show web
      rolecall baseline show web -o json | jq .version
    """
    from rolecall.controller.baselines import current_baseline
    from rolecall.controller.render import print_table, print_tsv
    from rolecall.schemas.errors import UnknownRole

    c = ctx_of(ctx)
    baseline, etag = current_baseline(c.storage, role)
    if baseline is None:
        raise UnknownRole(f"no baseline published for role {role!r}")
    if output is Format.JSON:
        emit_json({**baseline.model_dump(mode="json"), "etag": etag})
        return
    rows = [[i, s.name, s.payload.filename, s.payload.sha256[:12], f"{s.timeout_s:g}s",
             s.reboot.value] for i, s in enumerate(baseline.steps)]  # fmt: skip
    if output is Format.TSV:
        print_tsv(rows)
        return
    print_table(c.console, ("step", "name", "file", "sha256", "timeout", "reboot"), rows,
                title=f"{role} baseline v{baseline.version} by {baseline.issuer}, "
                f"{baseline.updated_at:%Y-%m-%d %H:%M:%S}Z", empty="no steps")  # fmt: skip


@poison_app.command("list")
@expected_errors
def poison_list(
    ctx: typer.Context,
    role: Annotated[str | None, typer.Argument(metavar="[ROLE]", help="Only this role.")] = None,
    output: Output = Format.TABLE,
) -> None:
    """List poisoned messages with their reasons.

    \b
    Examples:
      rolecall poison list
      rolecall poison list web -o tsv | cut -f2
    """
    from rolecall.controller.poison import list_poison, masked
    from rolecall.controller.render import print_table, print_tsv

    c = ctx_of(ctx)
    entries = list_poison(c.storage, role)
    if output is Format.JSON:
        emit_json([
            {"queue": e.queue, "message_id": e.message_id,
             "record": masked(e.record) if e.record else None}
            for e in entries
        ])  # fmt: skip
        return
    rows = [[e.queue, e.message_id, r.reason if r else "?", (r.job_id or "") if r else "",
             r.error[:120] if r else "unreadable poison record"]
            for e in entries for r in (e.record,)]  # fmt: skip
    if output is Format.TSV:
        print_tsv(rows)
        return
    print_table(c.console, ("queue", "message id", "reason", "job", "error"), rows,
                empty="no poisoned messages" + (f" for role {role}" if role else ""))  # fmt: skip


def _find(ctx: typer.Context, message_id: str):  # type: ignore[no-untyped-def]
    from rolecall.controller.poison import list_poison
    from rolecall.schemas.errors import NotFound

    for e in list_poison(ctx_of(ctx).storage):
        if e.message_id == message_id:
            return e
    raise NotFound(f"no poisoned message {message_id} (only the first 32 per queue are visible)")


@poison_app.command("show")
@expected_errors
def poison_show(ctx: typer.Context, message_id: MessageId, output: Output = Format.TABLE) -> None:
    """Show one poisoned message: why, the error, its last output, and the original job
    decoded (secret values masked).

    \b
    Examples:
      rolecall poison show 5d7a0e1c-3f1b-4c55-9d7e-0f6f2f1d9a11
      rolecall poison show 5d7a0e1c-3f1b-4c55-9d7e-0f6f2f1d9a11 -o json | jq .record.original
    """
    from rolecall.controller.poison import masked

    e = _find(ctx, message_id)
    record: Any = masked(e.record) if e.record else {"original": e.raw}
    if output is Format.JSON:
        emit_json({"queue": e.queue, "message_id": e.message_id, "record": record})
        return
    _show_poison(ctx, e.queue, e.message_id, record, output)


def _show_poison(
    ctx: typer.Context, queue: str, message_id: str, record: dict[str, Any], output: Format
) -> None:
    import json

    from rolecall.controller.render import print_tsv

    keys = ("reason", "error", "job_id", "run_id", "instance", "incarnation", "dequeue_count",
            "poisoned_at")  # fmt: skip
    fields = [("queue", queue), ("message id", message_id)] + [
        (k.replace("_", " "), record.get(k)) for k in keys if record.get(k) not in (None, "")
    ]
    if output is Format.TSV:
        print_tsv(fields)
        return
    out = ctx_of(ctx).console
    for name, value in fields:
        out.print(f"{name + ':':15}{value}", markup=False, highlight=False)
    if record.get("last_output"):
        out.print(f"last output:\n{record['last_output']}", markup=False, highlight=False)
    original = record.get("original")
    text = json.dumps(original, indent=2) if isinstance(original, dict) else str(original)
    out.print(f"original job:\n{text}", markup=False, highlight=False)


@poison_app.command("requeue")
@expected_errors
def poison_requeue(
    ctx: typer.Context,
    message_id: Annotated[
        str | None, typer.Argument(metavar="[MESSAGE_ID]", help="Omit with --all.")
    ] = None,
    queue: Annotated[
        str | None, Opt(metavar="QUEUE", help="Poison queue (found from the id if omitted).")
    ] = None,
    all_: Annotated[bool, Opt("--all", help="Every message in --queue.")] = False,
    unsigned: Unsigned = False,
) -> None:
    """Send poisoned jobs back to their source queue, re-verified and re-signed, with their
    attempt count reset.

    A poison record is what a worker wrote: its job goes back only if signed by this
    controller's key (or one of its ROLECALL_TRUSTED_KEYS), addressed to that queue, not
    refused as replayed and not done already, with a fresh send time and signature. Any other
    stays in the poison queue, one line each on stderr, and the exit code is 1.

    \b
    Examples:
      rolecall poison requeue 5d7a0e1c-3f1b-4c55-9d7e-0f6f2f1d9a11
      rolecall poison requeue --all --queue rc-role-web-poison
    """
    from rolecall.controller.cli import dispatcher
    from rolecall.controller.fold import EventFolder
    from rolecall.controller.render import plural
    from rolecall.controller.requeue import Requeue

    c = ctx_of(ctx)
    signer = c.job_signer(unsigned)
    q = _queue(ctx, message_id, queue, all_)
    EventFolder(c.storage, dispatcher(ctx)).fold_all()  # runs current: what is done stays done
    done = Requeue(c.storage, q, c.own_keys(signer), signer).run(None if all_ else message_id)
    for line in done.refused:
        c.err.print(f"refused {line}", markup=False)
    left = f"; refused {len(done.refused)}, left in the queue" if done.refused else ""
    typer.echo(f"requeued {plural(done.sent, 'message')} from {q}{left}")
    if done.refused:
        raise typer.Exit(EXIT_FAILED)


@poison_app.command("purge")
@expected_errors
def poison_purge(
    ctx: typer.Context,
    message_id: Annotated[
        str | None, typer.Argument(metavar="[MESSAGE_ID]", help="Omit with --all.")
    ] = None,
    queue: Annotated[str | None, Opt(metavar="QUEUE", help="Poison queue.")] = None,
    all_: Annotated[bool, Opt("--all", help="Every message in --queue.")] = False,
) -> None:
    """Delete poisoned messages for good.

    \b
    Examples:
      rolecall poison purge 5d7a0e1c-3f1b-4c55-9d7e-0f6f2f1d9a11
      rolecall poison purge --all --queue rc-role-web-poison
    """
    from rolecall.controller.poison import purge

    q = _queue(ctx, message_id, queue, all_)
    n = purge(ctx_of(ctx).storage, q, None if all_ else message_id)
    typer.echo(f"purged {n} message(s) from {q}")


def _queue(ctx: typer.Context, message_id: str | None, queue: str | None, all_: bool) -> str:
    from rolecall.schemas.errors import ConfigError

    if all_:
        if queue is None:
            raise ConfigError("--all needs --queue (see `rolecall poison list`)")
        if message_id is not None:
            raise ConfigError("give a message id or --all, not both")
        return queue
    if message_id is None:
        raise ConfigError("give a message id, or --all with --queue")
    return queue or str(_find(ctx, message_id).queue)


@expected_errors
def names(
    ctx: typer.Context,
    role: Role,
    instance: Annotated[str | None, typer.Argument(metavar="[INSTANCE]")] = None,
    output: Output = Format.TABLE,
) -> None:
    """Print the storage names for a role (and instance), for templates and scripts.

    \b
    Examples:
      rolecall names web
      rolecall names web WebRole_IN_0 -o json
    """
    from rolecall.controller.render import print_tsv

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
        # where its instance records live: the template grants a role's identity this prefix
        "instances_prefix": n.instances_prefix(role),
    }
    if instance:
        data |= {
            "instance_queue": n.instance_queue(instance),
            "instance_poison_queue": n.poison_queue(n.instance_queue(instance)),
            "instance_blob": n.instance_blob(role, instance),
        }
    if output is Format.JSON:
        emit_json(data)
    elif output is Format.TSV:
        print_tsv(list(data.items()))
    else:
        for k, v in data.items():
            typer.echo(f"{k:22} {' '.join(v) if isinstance(v, list) else v}")
