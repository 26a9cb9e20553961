"""Operators' commands: run, status, wait, logs, instances, cancel, controller."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from rolecall.controller.context import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    Unsigned,
    ctx_of,
    emit_json,
    expected_errors,
)

Opt = typer.Option
Output = Annotated[str, Opt("--output", "-o", help="table or json.")]


def _kv(pairs: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise typer.BadParameter(f"{what} must look like NAME=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = v
    return out


# One alias per option of `run`, so its signature reads as a list of names.
RunRole = Annotated[str, typer.Argument(help="Role to run on.")]
Script = Annotated[Path, Opt(help="Script or archive (.zip/.tar.gz) to run.")]
AnyInstance = Annotated[bool, Opt("--any", help="One job on the role queue; any one instance.")]
Each = Annotated[bool, Opt("--each", help="One job per live instance of the role.")]
Instances = Annotated[
    list[str] | None, Opt("--instance", help="With --each: only these instances.")
]
Timeout = Annotated[float, Opt(help="Execution timeout per job, seconds.")]
Deadline = Annotated[
    float | None, Opt(help="Refuse the job if not claimed within this many seconds.")
]
MaxAttempts = Annotated[int, Opt(help="Attempts before a job is poisoned.")]
MaxConcurrency = Annotated[str | None, Opt(help="With --each: at most N or P% targets in flight.")]
MaxErrors = Annotated[
    str | None, Opt(help="With --each: stop dispatching after more than N or P% errors.")
]
Args = Annotated[list[str] | None, Opt("--arg", help="Argument for the script (repeatable).")]
Env = Annotated[list[str] | None, Opt("--env", help="NAME=VALUE for the job (repeatable).")]
SecretEnv = Annotated[
    list[str] | None, Opt("--secret-env", help="NAME=VALUE never logged or echoed.")
]
Entrypoint = Annotated[str | None, Opt(help="For archives: the file to start.")]
Wait = Annotated[bool, Opt("--wait", help="Wait for the run and exit non-zero on failure.")]
WaitTimeout = Annotated[float | None, Opt(help="With --wait: give up after S seconds.")]
TooOldOpt = Annotated[
    Literal["stop", "skip"],
    Opt("--too-old", help="Targets whose agents cannot read the job: stop, or skip them."),
]


@expected_errors
def run(
    ctx: typer.Context,
    role: RunRole,
    script: Script,
    any_: AnyInstance = False,
    each: Each = False,
    instance: Instances = None,
    timeout: Timeout = 600.0,
    deadline: Deadline = None,
    max_attempts: MaxAttempts = 3,
    max_concurrency: MaxConcurrency = None,
    max_errors: MaxErrors = None,
    arg: Args = None,
    env: Env = None,
    secret_env: SecretEnv = None,
    entrypoint: Entrypoint = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = None,
    too_old: TooOldOpt = "stop",
    unsigned: Unsigned = False,
    output: Output = "table",
) -> None:
    """Enqueue a configuration run for a role; prints the run id.

    Examples:

      rolecall run web --script fix-iis.ps1 --each --max-concurrency 25% --max-errors 1

      rolecall run web --script rotate-logs.sh --any --wait
    """
    from rolecall.controller.runs import RunRequest, start_run
    from rolecall.schemas.errors import ConfigError
    from rolecall.schemas.runs import RunMode

    if any_ == each:
        raise ConfigError("choose exactly one of --any or --each")
    c = ctx_of(ctx)
    req = RunRequest(
        role=role, script=script, mode=RunMode.ANY if any_ else RunMode.EACH,
        instances=instance or [], timeout_s=timeout, deadline_s=deadline,
        max_attempts=max_attempts, max_concurrency=max_concurrency, max_errors=max_errors,
        args=arg or [], env=_kv(env, "--env"), secret_env=_kv(secret_env, "--secret-env"),
        entrypoint=entrypoint, issuer=c.settings.issuer, too_old=too_old,
    )  # fmt: skip
    record = start_run(c.storage, req, signer=c.job_signer(unsigned), published=c.published())
    started = {"run_id": record.run_id, "targets": list(record.targets)}
    emit_json(started) if output == "json" and not wait else typer.echo(record.run_id)
    if wait:
        _wait(ctx, record.run_id, wait_timeout, output)


@expected_errors
def status(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id.")],
    output: Output = "table",
    fold: Annotated[bool, Opt(help="Fold pending events first (no service needed).")] = True,
) -> None:
    """Show a run: one row per target with state, exit code, attempts and output tail.

    Example: rolecall status r20261126-101500-1a2b3c -o json
    """
    from rolecall.controller.fold import EventFolder
    from rolecall.controller.status import print_run, run_json
    from rolecall.controller.store import RunStore

    c = ctx_of(ctx)
    store = RunStore(c.storage)
    store.load(run_id)  # unknown run: a clear error before any folding
    if fold:
        folder = EventFolder(c.storage, _dispatcher(ctx))
        folder.fold_all()
        record = folder.advance(run_id)
    else:
        record = store.get(run_id)
    if output == "json":
        emit_json(run_json(record))
    else:
        print_run(record, c.console)


def _dispatcher(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from rolecall.controller.dispatch import Dispatcher

    c = ctx_of(ctx)
    return Dispatcher(c.storage, c.signer())


@expected_errors
def wait(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id.")],
    timeout: Annotated[float | None, Opt(help="Give up after this many seconds (exit 3).")] = None,
    output: Output = "table",
) -> None:
    """Wait for a run to finish; exit 0 only if every target succeeded.

    Exit codes: 0 all succeeded, 1 some target failed (listed), 3 timed out.
    """
    _wait(ctx, run_id, timeout, output)


def _wait(ctx: typer.Context, run_id: str, timeout: float | None, output: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from rolecall.controller.fold import EventFolder
    from rolecall.controller.status import print_run, run_json
    from rolecall.controller.store import RunStore
    from rolecall.schemas.runs import RunState
    from rolecall.storage.backoff import IdleBackoff

    c = ctx_of(ctx)
    store = RunStore(c.storage)
    folder = EventFolder(c.storage, _dispatcher(ctx))
    record = store.get(run_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff = IdleBackoff(0.2, 2.0)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=c.console, transient=True, disable=output == "json",
    )  # fmt: skip
    with progress:
        task = progress.add_task(run_id, total=len(record.targets))
        while True:
            stats = folder.fold_all()
            record = folder.advance(run_id) if not stats.messages else store.get(run_id)
            done = sum(1 for t in record.targets.values() if t.state.terminal)
            progress.update(task, completed=done, total=len(record.targets))
            if record.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if stats.messages:
                backoff.busy()
            time.sleep(backoff.idle())
    if output == "json":
        emit_json(run_json(record))
    else:
        print_run(record, c.console)
    if record.state is RunState.SUCCEEDED:
        return
    if record.state in (RunState.RUNNING, RunState.PENDING):
        c.console.print(f"[yellow]timed out waiting for {run_id}[/]")
        raise typer.Exit(EXIT_TIMEOUT)
    failed = [k for k, t in record.targets.items() if not t.state.ok]
    c.console.print(f"[red]failed targets:[/] {', '.join(failed)}")
    raise typer.Exit(EXIT_FAILED)


@expected_errors
def logs(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    instance: Annotated[str, typer.Argument(help="Instance name, or 'any' for --any runs.")],
) -> None:
    """Print a target's full log (or its output tails if the log fit in the completion)."""
    from rolecall.controller.store import RunStore
    from rolecall.schemas.errors import ConfigError
    from rolecall.schemas.names import Names

    c = ctx_of(ctx)
    record = RunStore(c.storage).get(run_id)
    t = record.targets.get(instance) or next(
        (t for t in record.targets.values() if t.instance == instance), None
    )
    if t is None:
        raise ConfigError(f"run {run_id} has no target {instance!r}")
    if t.log_blob:
        container, path = Names.split_blob_address(t.log_blob)
        typer.echo(c.storage.get_blob(container, path).data.decode("utf-8", "replace"))
        return
    typer.echo(f"--- stdout ---\n{t.stdout_tail}\n--- stderr ---\n{t.stderr_tail}")


@expected_errors
def instances(
    ctx: typer.Context,
    role: Annotated[str | None, Opt(help="Only this role.")] = None,
    output: Output = "table",
) -> None:
    """List instances: role, incarnation, last seen, baseline version, live or stale."""
    from rich.table import Table

    from rolecall.controller.fleet import list_instances
    from rolecall.schemas.base import utcnow

    c = ctx_of(ctx)
    now = utcnow()
    rows = list_instances(c.storage, role)
    if output == "json":
        emit_json([r.as_dict(now) for r in rows])
        return
    table = Table()
    columns = ("role", "instance", "incarnation", "last seen", "state", "baseline", "agent",
               "contract", "liveness")  # fmt: skip
    for col in columns:
        table.add_column(col)
    for r in rows:
        ago = (now - r.last_seen).total_seconds()
        table.add_row(
            r.role_key, r.instance, r.incarnation, f"{ago:.0f}s ago", r.state,
            "" if r.baseline_version is None else f"v{r.baseline_version}",
            r.agent_version or "?", str(r.contract),
            "[green]live[/]" if r.live(now) else "[red]stale[/]",
        )  # fmt: skip
    c.console.print(table)


@expected_errors
def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    unsigned: Unsigned = False,
) -> None:
    """Cancel a run: nothing more is dispatched, queued jobs are removed, and running jobs
    are stopped at their next lease renewal (within 30 s by default).

    Example: rolecall cancel r20261126-101500-1a2b3c
    """
    from rolecall.controller.cancel import cancel_run

    c = ctx_of(ctx)
    done = cancel_run(c.storage, run_id, c.job_signer(unsigned))
    if done.unchanged:
        typer.echo(f"{run_id} {done.unchanged}; nothing changed")
        return
    stopping = f"; stopping it on {', '.join(done.stopping[:5])}" if done.stopping else ""
    more = f" and {len(done.stopping) - 5} more" if len(done.stopping) > 5 else ""
    typer.echo(f"cancelled {run_id}: {done.removed} queued job(s) removed{stopping}{more}")


@expected_errors
def controller(
    ctx: typer.Context,
    poll_max: Annotated[float, Opt(help="Longest idle poll interval, seconds.")] = 60.0,
    log_level: Annotated[str | None, Opt(help="debug, info, warning, error.")] = None,
    log_format: Annotated[
        str | None, Opt(help="json, text, or auto (default): text on a terminal, else JSON.")
    ] = None,
) -> None:
    """Run the controller service: fold events into run records and dispatch rate-controlled
    runs. Optional: status and wait fold too. Several may run at once."""
    import signal
    import threading

    from rolecall import logs
    from rolecall.controller.service import serve

    c = ctx_of(ctx)
    c.flags.update(log_level=log_level, log_format=log_format)
    logs.configure(c.settings.log_level, fmt=c.settings.log_format)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    serve(c.storage, _dispatcher(ctx), stop, poll_max_s=poll_max)
