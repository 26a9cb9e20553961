"""``rolecall worker``: the agent's command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

Opt = typer.Option
STATE_DIR_HELP = (
    "Local state (the instance's disk); wiped means a new incarnation. "
    "Default /var/lib/rolecall, or %ProgramData%\\rolecall on Windows."
)


def worker(
    ctx: typer.Context,
    role: Annotated[str | None, Opt(help="Role of this instance (or ROLECALL_ROLE).")] = None,
    instance: Annotated[
        str | None, Opt(help="Stable instance name, e.g. WebRole_IN_0 (or ROLECALL_INSTANCE).")
    ] = None,
    state_dir: Annotated[
        Path | None,
        Opt(help=STATE_DIR_HELP),
    ] = None,
    once: Annotated[
        bool, Opt("--once", help="Boot, apply the baseline, drain queued work, exit.")
    ] = False,
    check: Annotated[
        bool, Opt("--check", help="Verify settings, identity and storage access; claim nothing.")
    ] = False,
    config: Annotated[Path | None, Opt(help="Config file (TOML, JSON or YAML).")] = None,
    namespace: Annotated[str | None, Opt(help="Storage namespace prefix (default rc).")] = None,
    use_imds: Annotated[
        bool | None, Opt("--use-imds", help="Take role/instance from Azure instance metadata.")
    ] = None,
    imds_endpoint: Annotated[str | None, Opt(help="Instance metadata endpoint.")] = None,
    lease_s: Annotated[int | None, Opt("--lease", help="Visibility timeout in seconds.")] = None,
    poll_max_s: Annotated[
        float | None, Opt("--poll-max", help="Longest idle poll interval.")
    ] = None,
    heartbeat_s: Annotated[
        float | None, Opt("--heartbeat", help="Heartbeat interval, seconds.")
    ] = None,
    grace_s: Annotated[
        float | None, Opt("--grace", help="Shutdown grace for a running job.")
    ] = None,
    reboot_command: Annotated[
        str | None, Opt(help="Command run when a step exits 3010/194 (default: none).")
    ] = None,
    trusted_key: Annotated[
        list[Path] | None, Opt(help="Trusted controller public key (repeatable).")
    ] = None,
    log_level: Annotated[str | None, Opt(help="debug, info, warning, error.")] = None,
    log_format: Annotated[
        str | None, Opt(help="json, text, or auto (default): text on a terminal, else JSON.")
    ] = None,
    stats_file: Annotated[
        Path | None, Opt(help="Write storage transaction counts here on exit.")
    ] = None,
) -> None:
    """Run the agent: register, apply the role's baseline, then claim and run jobs.

    Examples:

      rolecall worker --role web --instance WebRole_IN_0 --state-dir /var/lib/rolecall

      rolecall worker --use-imds --once        # at boot time

      rolecall worker --use-imds --check       # at image-bake time: verify, claim nothing
    """
    from rolecall import logs
    from rolecall.schemas.errors import RolecallError
    from rolecall.worker.config import WorkerSettings
    from rolecall.worker.shutdown import ExitCode

    root = ctx.find_root().obj  # `rolecall --config F --namespace N worker ...` works too
    config = config or getattr(root, "config", None)
    namespace = namespace or getattr(root, "namespace", None)
    flags: dict[str, Any] = {
        "role": role, "instance": instance, "state_dir": state_dir, "config_file": config,
        "namespace": namespace, "use_imds": use_imds, "imds_endpoint": imds_endpoint,
        "lease_s": lease_s, "poll_max_s": poll_max_s, "heartbeat_s": heartbeat_s,
        "grace_s": grace_s, "reboot_command": reboot_command, "trusted_keys": trusted_key,
        "log_level": log_level, "log_format": log_format, "stats_file": stats_file,
    }  # fmt: skip
    try:
        settings = WorkerSettings(**{k: v for k, v in flags.items() if v is not None})
        # now, so identity and storage set-up log in the chosen format; the agent adds its
        # identity to every line once it knows it
        logs.configure(settings.log_level, fmt=settings.log_format)
        if check:  # image-bake check (worker/check.py): runs no Agent, so nothing is claimed
            from rolecall.worker.check import run_check

            raise typer.Exit(run_check(settings))
        from rolecall.worker.agent import Agent

        agent = Agent(settings)
    except RolecallError as e:
        typer.echo(f"rolecall worker: {e.message}", err=True)
        raise typer.Exit(ExitCode.CONFIG) from None
    except ValueError as e:  # pydantic validation of flags and environment
        typer.echo(f"rolecall worker: invalid settings: {e}", err=True)
        raise typer.Exit(ExitCode.CONFIG) from None
    raise typer.Exit(agent.run(once=once))
