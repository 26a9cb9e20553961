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


# One alias per option keeps the command's signature readable; the help text is the docs.
Role = Annotated[str | None, Opt(metavar="ROLE", help="Role of this instance (or ROLECALL_ROLE).")]
Instance = Annotated[
    str | None,
    Opt(metavar="NAME", help="Stable instance name, e.g. WebRole_IN_0 (or ROLECALL_INSTANCE)."),
]
StateDir = Annotated[Path | None, Opt(metavar="DIR", help=STATE_DIR_HELP)]
Once = Annotated[bool, Opt("--once", help="Boot, apply the baseline, drain queued work, exit.")]
Check = Annotated[
    bool, Opt("--check", help="Verify settings, identity and storage access; claim nothing.")
]
Config = Annotated[Path | None, Opt(metavar="FILE", help="Config file (TOML, JSON or YAML).")]
Namespace = Annotated[str | None, Opt(metavar="NS", help="Storage namespace prefix (default rc).")]
UseImds = Annotated[
    bool | None, Opt("--use-imds", help="Take role/instance from Azure instance metadata.")
]
ImdsEndpoint = Annotated[str | None, Opt(metavar="URL", help="Instance metadata endpoint.")]
Lease = Annotated[
    int | None, Opt("--lease", metavar="SECONDS", help="Visibility timeout in seconds.")
]
PollMax = Annotated[
    float | None,
    Opt("--poll-max", metavar="SECONDS",
        help="Longest idle poll interval (default 60; 1 for local work, see README)."),
]  # fmt: skip
Heartbeat = Annotated[
    float | None,
    Opt("--heartbeat", metavar="SECONDS", help="Heartbeat interval (default 60): lost after 2.5."),
]
Grace = Annotated[
    float | None, Opt("--grace", metavar="SECONDS", help="Shutdown grace for a running job.")
]
RebootCommand = Annotated[
    str | None,
    Opt(metavar="COMMAND", help="Command run when a step exits 3010/194 (default: none)."),
]
TrustedKey = Annotated[
    list[Path] | None,
    Opt(metavar="FILE", help="Trusted controller public key (repeatable)."),
]
AcceptUnsigned = Annotated[
    bool | None,
    Opt("--accept-unsigned", help="No trusted key: run unsigned jobs (development only)."),
]
LogLevel = Annotated[str | None, Opt(metavar="LEVEL", help="debug, info, warning, error.")]
LogFormat = Annotated[
    str | None,
    Opt(metavar="FORMAT", help="json, text, or auto (default): text on a terminal, else JSON."),
]
StatsFile = Annotated[
    Path | None, Opt(metavar="FILE", help="Write storage transaction counts here on exit.")
]


def worker(
    ctx: typer.Context,
    role: Role = None,
    instance: Instance = None,
    state_dir: StateDir = None,
    once: Once = False,
    check: Check = False,
    config: Config = None,
    namespace: Namespace = None,
    use_imds: UseImds = None,
    imds_endpoint: ImdsEndpoint = None,
    lease_s: Lease = None,
    poll_max_s: PollMax = None,
    heartbeat_s: Heartbeat = None,
    grace_s: Grace = None,
    reboot_command: RebootCommand = None,
    trusted_key: TrustedKey = None,
    accept_unsigned: AcceptUnsigned = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
    stats_file: StatsFile = None,
) -> None:
    """Run the agent: register, apply the role's baseline, then claim and run jobs.

    \b
    Examples:
      rolecall worker --role web --instance WebRole_IN_0 --state-dir /var/lib/rolecall
      rolecall worker --use-imds --once        # at boot time
      rolecall worker --use-imds --check       # at image-bake time: verify, claim nothing
      rolecall worker --role web --instance web-0 --state-dir ./disk --poll-max 1  # local
    """
    root = ctx.find_root().obj  # `rolecall --config F --namespace N worker ...` works too
    flags: dict[str, Any] = {
        "role": role, "instance": instance, "state_dir": state_dir,
        "config_file": config or getattr(root, "config", None),
        "namespace": namespace or getattr(root, "namespace", None),
        "use_imds": use_imds, "imds_endpoint": imds_endpoint,
        "lease_s": lease_s, "poll_max_s": poll_max_s, "heartbeat_s": heartbeat_s,
        "grace_s": grace_s, "reboot_command": reboot_command, "trusted_keys": trusted_key,
        "accept_unsigned": accept_unsigned,
        "log_level": log_level, "log_format": log_format, "stats_file": stats_file,
    }  # fmt: skip
    raise typer.Exit(_start({k: v for k, v in flags.items() if v is not None}, once, check))


def _start(flags: dict[str, Any], once: bool, check: bool) -> int:
    """Settings, then the check or the agent; expected failures are one line, exit 2."""
    from rolecall import logs
    from rolecall.schemas.errors import RolecallError
    from rolecall.worker.config import WorkerSettings

    try:
        settings = WorkerSettings(**flags)
        # now, so identity and storage set-up log in the chosen format; the agent adds its
        # identity to every line once it knows it
        logs.configure(settings.log_level, fmt=settings.log_format)
        if check:  # image-bake check (worker/check.py): runs no Agent, so nothing is claimed
            from rolecall.worker.check import run_check

            return run_check(settings)
        from rolecall.worker.agent import Agent
        from rolecall.worker.commands import check_bitness

        check_bitness()  # a 32-bit Python on Windows: one line, exit 2
        agent = Agent(settings)
    except RolecallError as e:
        return _refuse(e.message)
    except OSError as e:  # the state directory, above all: a file, a path under one, /proc
        return _refuse(_os_problem(e, flags.get("state_dir")))
    except ValueError as e:  # pydantic validation of flags and environment
        return _refuse(f"invalid settings: {_validation(e)}")
    return _run(agent, once)


def _refuse(message: str) -> int:
    from rolecall.worker.shutdown import ExitCode

    typer.echo(f"rolecall worker: {' '.join(message.split())}", err=True)
    return ExitCode.CONFIG


def _run(agent: Any, once: bool) -> int:
    """The agent's life; a bug in it is logged (one JSON line, traceback inside) and exits 1
    for the service manager to restart it."""
    import logging

    from rolecall import telemetry

    try:
        # exports only where the environment asks for it (rolecall/telemetry.py)
        meter = telemetry.meter_instruments(agent.storage.meter)
        with telemetry.session("rolecall-worker", agent.identity.instance, meter):
            return int(agent.run(once=once))
    except Exception:
        logging.getLogger("rolecall.worker").exception("the agent stopped on an unexpected error")
        return 1


ANOTHER = "choose another --state-dir"


def _os_problem(e: OSError, state_dir: object) -> str:
    """What to fix, when the agent could not use a path it was given."""
    import errno

    from rolecall.worker.config import default_state_dir

    root = Path(str(state_dir)) if state_dir else default_state_dir()
    where = Path(e.filename) if e.filename else None
    if where is None or not (where == root or root in where.parents):
        return f"{e.filename or 'a file'}: {e.strerror or e}"
    blocker = next((p for p in (root, *root.parents) if p.exists()), None)
    if e.errno in (errno.EEXIST, errno.ENOTDIR) and blocker is not None and not blocker.is_dir():
        return f"state directory {root}: {blocker} is a file, not a directory; {ANOTHER}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"state directory {root}: {e.strerror.lower() if e.strerror else 'not allowed'}; "
            f"run the agent as root (its service does) or {ANOTHER}"
        )
    return (
        f"state directory {root}: cannot create it ({e.strerror or e}); choose another --state-dir"
    )


def _validation(e: ValueError) -> str:
    from pydantic import ValidationError

    from rolecall.schemas.codec import summarise

    return summarise(e) if isinstance(e, ValidationError) else str(e)
