"""Operators' commands: run, status, wait, cancel (and the waiting they share); the
controller service is in cli_service.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer

from rolecall.controller.context import Unsigned, ctx_of, emit_json, expected_errors
from rolecall.controller.render import Format, Output, plural

if TYPE_CHECKING:
    from rolecall.controller.dispatch import Dispatcher
    from rolecall.controller.waiting import Waited
    from rolecall.schemas.runs import RunRecord

Opt = typer.Option
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id (see `rolecall runs`).")]

# One alias per option of `run`, so its signature reads as a list of names.
RunRole = Annotated[str, typer.Argument(metavar="ROLE", help="Role to run on.")]
Script = Annotated[Path, Opt(metavar="FILE", help="Script or archive (.zip/.tar.gz) to run.")]
AnyInstance = Annotated[bool, Opt("--any", help="One job on the role queue; any one instance.")]
Each = Annotated[bool, Opt("--each", help="One job per live instance of the role.")]
Instances = Annotated[
    list[str] | None,
    Opt("--instance", metavar="NAME", help="With --each: only this instance (repeatable)."),
]
AllowUnregistered = Annotated[
    bool,
    Opt("--allow-unregistered", help="With --instance: queue for names not registered yet."),
]
Timeout = Annotated[float, Opt(metavar="SECONDS", help="Execution timeout per job.")]
Deadline = Annotated[
    float | None, Opt(metavar="SECONDS", help="Refuse the job if not claimed within this.")
]
MaxAttempts = Annotated[int, Opt(metavar="N", help="Attempts before a job is poisoned.")]
MaxConcurrency = Annotated[
    str | None, Opt(metavar="N|P%", help="With --each: at most N or P% targets in flight.")
]
MaxErrors = Annotated[
    str | None,
    Opt(metavar="N|P%", help="With --each: stop dispatching after more than N or P% errors."),
]
Args = Annotated[
    list[str] | None, Opt("--arg", metavar="ARG", help="Script argument (repeatable).")
]
Env = Annotated[
    list[str] | None, Opt("--env", metavar="NAME=VALUE", help="Job environment (repeatable).")
]
SecretEnv = Annotated[
    list[str] | None,
    Opt("--secret-env", metavar="NAME=VALUE",
        help="Never logged or echoed; sealed to the role's key (repeatable)."),
]  # fmt: skip
ClearSecrets = Annotated[
    bool,
    Opt("--clear-secrets", help="Send --secret-env values in clear (the role has no sealing key)."),
]
Entrypoint = Annotated[str | None, Opt(metavar="FILE", help="For archives: the file to start.")]
Wait = Annotated[bool, Opt("--wait", help="Wait for the run; exit 0 only if all succeeded.")]
WaitTimeout = Annotated[
    float | None, Opt(metavar="SECONDS", help="With --wait: give up after this (exit 3).")
]
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
    allow_unregistered: AllowUnregistered = False,
    timeout: Timeout = 600.0,
    deadline: Deadline = None,
    max_attempts: MaxAttempts = 3,
    max_concurrency: MaxConcurrency = None,
    max_errors: MaxErrors = None,
    arg: Args = None,
    env: Env = None,
    secret_env: SecretEnv = None,
    clear: ClearSecrets = False,
    entrypoint: Entrypoint = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = None,
    too_old: TooOldOpt = "stop",
    unsigned: Unsigned = False,
    output: Output = Format.TABLE,
) -> None:
    """Enqueue a configuration run for a role; prints the run id.

    \b
    Examples:
      rolecall run web --script rotate.sh --any --wait
      rolecall run web --script fix.sh --each --max-concurrency 25% --max-errors 1
      rolecall run web --script fix.sh --each --instance web-0 --instance web-1
      rolecall run web --script site.tar.gz --entrypoint deploy.sh --each -o json
    """
    from rolecall.controller import run_options as check
    from rolecall.controller.runs import RunRequest, start_run
    from rolecall.schemas.runs import RunMode

    check.run_flags(any_, each, instance, timeout, deadline, max_attempts, max_concurrency,
                    max_errors, script, entrypoint, wait, wait_timeout)  # fmt: skip
    c = ctx_of(ctx)
    req = RunRequest(
        role=role, script=script, mode=RunMode.ANY if any_ else RunMode.EACH,
        instances=instance or [], timeout_s=timeout, deadline_s=deadline, clear_secrets=clear,
        max_attempts=max_attempts, max_concurrency=max_concurrency, max_errors=max_errors,
        args=arg or [], env=check.pairs("--env", env),
        secret_env=check.pairs("--secret-env", secret_env), entrypoint=entrypoint,
        issuer=c.settings.issuer, too_old=too_old, allow_unregistered=allow_unregistered,
    )  # fmt: skip
    started(ctx, start_run(c.storage, req, signer=c.job_signer(unsigned),
                           published=c.published()), wait, wait_timeout, output)  # fmt: skip


def started(
    ctx: typer.Context, record: RunRecord, wait: bool, timeout: float | None, output: Format
) -> None:
    """Say which run started (stdout for tables and TSV; stderr beside a JSON document),
    then wait for it if asked."""
    c = ctx_of(ctx)
    if output is Format.JSON and not wait:
        emit_json({"run_id": record.run_id, "targets": list(record.targets)})
        return
    if output is Format.TABLE or not wait:
        typer.echo(record.run_id)
    else:
        c.err.print(f"{record.run_id}: {plural(len(record.targets), 'target')}")
    if wait:
        wait_and_report(ctx, record.run_id, timeout, output)


@expected_errors
def status(
    ctx: typer.Context,
    run_id: RunArg,
    output: Output = Format.TABLE,
    fold: Annotated[bool, Opt(help="Fold pending events first (no service needed).")] = True,
) -> None:
    """Show a run: one row per target with state, exit code, attempts and output tail.

    Targets still queued for an instance that reads `lost` show as `unreachable`.

    \b
    Examples:
      rolecall status r20261126-101500-1a2b3c
      rolecall status r20261126-101500-1a2b3c -o json | jq '.targets[].state'
      rolecall status baseline-web-v2 -o tsv
    """
    from rolecall.controller.fold import EventFolder
    from rolecall.controller.store import RunStore
    from rolecall.controller.waiting import unreachable

    c = ctx_of(ctx)
    store = RunStore(c.storage)
    store.load(run_id)  # unknown run: a clear error before any folding
    if fold:
        folder = EventFolder(c.storage, dispatcher(ctx))
        folder.fold_all()
        record = folder.advance(run_id)
    else:
        record = store.get(run_id)
    show_run(ctx, record, unreachable(c.storage, record), output)


def show_run(
    ctx: typer.Context, record: RunRecord, unreachable: dict[str, str], output: Format
) -> None:
    from rolecall.controller.render import print_tsv
    from rolecall.controller.status import print_run, run_json, run_rows

    if output is Format.JSON:
        emit_json(run_json(record, unreachable))
    elif output is Format.TSV:
        print_tsv(run_rows(record, unreachable))
    else:
        print_run(record, ctx_of(ctx).console, unreachable)


def dispatcher(ctx: typer.Context) -> Dispatcher:
    from rolecall.controller.dispatch import Dispatcher

    c = ctx_of(ctx)
    return Dispatcher(c.storage, c.signer())


@expected_errors
def wait(
    ctx: typer.Context,
    run_id: RunArg,
    timeout: Annotated[
        float | None, Opt(metavar="SECONDS", help="Give up after this (exit 3).")
    ] = None,
    output: Output = Format.TABLE,
) -> None:
    """Wait for a run to finish; exit 0 only if every target succeeded.

    Exit codes: 0 all succeeded; 1 some target failed, or every target still in flight is
    unreachable (its instance reads `lost`: the wait would never end); 3 timed out.

    \b
    Examples:
      rolecall wait r20261126-101500-1a2b3c --timeout 600
      rolecall wait baseline-web-v2 -o json > result.json
    """
    wait_and_report(ctx, run_id, timeout, output)


def wait_and_report(
    ctx: typer.Context, run_id: str, timeout: float | None, output: Format
) -> NoReturn:
    """Wait (with a progress bar on stderr at a terminal), show the run, exit with its code."""
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from rolecall.controller.listing import remember
    from rolecall.controller.waiting import wait_for_run

    c = ctx_of(ctx)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=c.err,
        transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip
    with progress:
        task = progress.add_task(run_id, total=None)

        def tick(r: RunRecord) -> None:
            done = sum(1 for t in r.targets.values() if t.state.terminal)
            progress.update(task, completed=done, total=len(r.targets))

        waited = wait_for_run(c.storage, dispatcher(ctx), run_id, timeout=timeout, progress=tick)
    remember(c.storage, waited.record)  # for `rolecall runs`, which then need not read it
    show_run(ctx, waited.record, waited.unreachable, output)
    raise typer.Exit(verdict(ctx, waited))


def verdict(ctx: typer.Context, waited: Waited) -> int:
    """The wait's exit code; one line on stderr saying why it is not 0."""
    from rolecall.controller.waiting import verdict

    code, why = verdict(waited)
    if why:
        ctx_of(ctx).err.print(why)
    return code


@expected_errors
def cancel(ctx: typer.Context, run_id: RunArg, unsigned: Unsigned = False) -> None:
    """Cancel a run: nothing more is dispatched, queued jobs are removed, and running jobs
    are stopped at their next lease renewal (within 30 s by default).

    \b
    Example:
      rolecall cancel r20261126-101500-1a2b3c
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
