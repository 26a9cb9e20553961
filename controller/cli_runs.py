"""Operators' commands about past and running runs: runs, retry, logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from rolecall.controller import cli
from rolecall.controller.context import Unsigned, ctx_of, emit_json, expected_errors
from rolecall.controller.render import Format, Output

if TYPE_CHECKING:
    from rolecall.schemas.runs import RunRecord

Opt = typer.Option
StateOpt = Literal["pending", "running", "succeeded", "failed", "cancelled"]


@expected_errors
def runs(
    ctx: typer.Context,
    role: Annotated[str | None, Opt(metavar="ROLE", help="Only runs on this role.")] = None,
    state: Annotated[StateOpt | None, Opt(help="Only runs in this state.")] = None,
    since: Annotated[
        str | None, Opt(metavar="SPAN", help="Only runs created within this: 30m, 2h, 7d.")
    ] = None,
    limit: Annotated[int, Opt(metavar="N", help="At most N runs, newest first (0: all).")] = 20,
    output: Output = Format.TABLE,
) -> None:
    """List recent runs, newest first: id, role, mode, state, targets, age, description.

    Reads no run record: what it shows is kept in each run's blob metadata.

    \b
    Examples:
      rolecall runs
      rolecall runs --role web --state failed --since 1d
      rolecall runs -o tsv | cut -f1
    """
    from rolecall.controller.listing import MAX_VIEWS, list_runs, parse_span
    from rolecall.controller.render import print_table, print_tsv
    from rolecall.schemas.base import utcnow

    c = ctx_of(ctx)
    now = utcnow()
    after = now - parse_span(since) if since else None
    listed = list_runs(c.storage, role=role, state=state, since=after, limit=max(0, limit))
    if listed.unread:
        c.err.print(f"{listed.unread} more run(s) not read (at most {MAX_VIEWS} a listing): "
                    "narrow with --since, --role or --limit")  # fmt: skip
    found = listed.runs
    if output is Format.JSON:
        emit_json([r.as_dict() for r in found])
        return
    rows = [[r.run_id, r.role, r.mode, r.state, r.total,
             ", ".join(f"{n} {s}" for s, n in r.counts.items()),
             r.created_at.isoformat(timespec="seconds") if r.created_at else "", r.description]
            for r in found]  # fmt: skip
    if output is Format.TSV:
        print_tsv(rows)
        return
    print_table(c.console, ("run", "role", "mode", "state", "targets", "summary", "created",
                            "description"), rows, empty="no runs match")  # fmt: skip


@expected_errors
def retry(
    ctx: typer.Context,
    run_id: cli.RunArg,
    failed: Annotated[
        bool, Opt("--failed", help="Targets that failed, timed out, were rejected or expired.")
    ] = False,
    not_dispatched: Annotated[
        bool, Opt("--not-dispatched", help="Targets the error threshold never sent.")
    ] = False,
    instance: Annotated[
        list[str] | None, Opt("--instance", metavar="NAME", help="Only these targets.")
    ] = None,
    max_concurrency: cli.MaxConcurrency = None,
    max_errors: cli.MaxErrors = None,
    wait: cli.Wait = False,
    wait_timeout: cli.WaitTimeout = None,
    unsigned: Unsigned = False,
    output: Output = Format.TABLE,
) -> None:
    """Run a run's job again on the targets that did not succeed: a new run, printed as the
    run id, with the old run's pacing unless given here.

    \b
    Examples:
      rolecall retry r20261126-101500-1a2b3c --failed --wait
      rolecall retry r20261126-101500-1a2b3c --failed --not-dispatched --max-concurrency 2
    """
    from rolecall.controller import run_options as check
    from rolecall.controller.retry import RetryRequest, retry_run

    check.waiting(wait, wait_timeout)
    check.limit("--max-concurrency", max_concurrency, zero_ok=False)
    check.limit("--max-errors", max_errors, zero_ok=True)
    c = ctx_of(ctx)
    req = RetryRequest(
        run_id, failed=failed, not_dispatched=not_dispatched, instances=tuple(instance or ()),
        max_concurrency=max_concurrency, max_errors=max_errors, issuer=c.settings.issuer,
    )  # fmt: skip
    signer = c.job_signer(unsigned)
    cli.started(ctx, retry_run(c.storage, req, signer), wait, wait_timeout, output)


@expected_errors
def logs(
    ctx: typer.Context,
    run_id: cli.RunArg,
    instance: Annotated[
        str | None,
        typer.Argument(metavar="[INSTANCE]", help="Instance (or 'any'); omitted: every target."),
    ] = None,
    follow: Annotated[
        bool, Opt("--follow", "-f", help="Wait for targets still running; print each log then.")
    ] = False,
    timeout: Annotated[
        float | None, Opt(metavar="SECONDS", help="With --follow: give up after this (exit 3).")
    ] = None,
) -> None:
    """Print a target's log: the full log, or its output tails when the log fitted in them.
    For a baseline run, every step's log. Without INSTANCE, every target's, each under a
    header.

    With --follow the exit code is wait's: 0 all shown targets succeeded, 1 some failed or
    are unreachable, 3 timed out.

    \b
    Examples:
      rolecall logs r20261126-101500-1a2b3c web-0
      rolecall logs baseline-web-v2 web-0
      rolecall logs r20261126-101500-1a2b3c --follow
    """
    from rolecall.controller.store import RunStore
    from rolecall.controller.target_logs import find_target

    c = ctx_of(ctx)
    if timeout is not None and not follow:
        from rolecall.schemas.errors import ConfigError

        raise ConfigError("--timeout needs --follow")
    record = RunStore(c.storage).get(run_id)
    keys = [find_target(record, instance)[0]] if instance else list(record.targets)
    if not follow:
        _print_logs(ctx, record, keys, headers=instance is None)
        return
    raise typer.Exit(_follow(ctx, run_id, keys, timeout, headers=instance is None))


def _print_logs(ctx: typer.Context, record: RunRecord, keys: list[str], *, headers: bool) -> None:
    from rolecall.controller.target_logs import log_text

    c = ctx_of(ctx)
    for key in keys:
        t = record.targets[key]
        if headers:
            code = "" if t.exit_code is None else f", exit {t.exit_code}"
            typer.echo(f"##### {t.instance or key}: {t.state.value}{code} #####")
        typer.echo(log_text(c.storage, record, t))


def _follow(
    ctx: typer.Context, run_id: str, keys: list[str], timeout: float | None, *, headers: bool
) -> int:
    """Print each target's log as it finishes; wait's exit code for the targets followed."""
    from rolecall.controller.waiting import wait_for_run

    c = ctx_of(ctx)
    shown: set[str] = set()

    def show_finished(r: RunRecord) -> None:
        done = [k for k in keys if k not in shown and r.targets[k].state.terminal]
        _print_logs(ctx, r, done, headers=headers)
        shown.update(done)

    waited = wait_for_run(c.storage, cli.dispatcher(ctx), run_id, timeout=timeout,
                          progress=show_finished, only=keys)  # fmt: skip
    show_finished(waited.record)
    return cli.verdict(ctx, waited)
