"""``rolecall service install|uninstall``: the Windows service that runs the agent.

Both are idempotent: install creates the service or updates it in place (run it again
after an upgrade, or to point the service at a launcher), uninstall stops it (the agent
drains) and deletes it. deploy/windows/install.ps1 calls them; docs/deploy.md explains the
service (worker/service.py, worker/winservice.py).
"""

from __future__ import annotations

import ntpath
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

service_app = typer.Typer(
    help="The Windows service that runs the agent (Windows only; Linux uses systemd).",
    no_args_is_help=True,
    add_completion=False,
)
Opt = typer.Option

DataDir = Annotated[
    str | None,
    Opt(metavar="DIR", help="Where worker.env and logs\\ are (default %ProgramData%\\rolecall)."),
]
Command = Annotated[
    str | None,
    Opt(
        metavar="CMD",
        help="Command line the service runs: default this installation's `rolecall worker`; "
        "or a launcher that picks the installed version to run.",
    ),
]
ForImage = Annotated[
    bool,
    Opt("--for-image", help="Register it disabled: SetupComplete.cmd enables it on each new VM."),
]
Launcher = Annotated[
    str | None,
    Opt(
        metavar="FILE",
        help="A side-by-side install's launch.py: the service runs it, and it picks the version.",
    ),
]
Grace = Annotated[
    float,
    Opt(
        "--grace",
        metavar="SECONDS",
        help="The agent's ROLECALL_GRACE_S (sets the shutdown deadline).",
    ),
]


def default_command(scripts_dir: str) -> str:
    return f'"{ntpath.join(scripts_dir, "rolecall.exe")}" worker'


def _windows_only() -> None:
    if sys.platform != "win32":
        typer.echo(
            "rolecall service: Windows only; on Linux the systemd unit (deploy/linux) runs "
            "the agent",
            err=True,
        )
        raise typer.Exit(2)


@service_app.command("install")
def install(
    data_dir: DataDir = None,
    command: Command = None,
    for_image: ForImage = False,
    grace: Grace = 30.0,
    launcher: Launcher = None,
) -> None:
    """Create or update the rolecall-worker service (run as Administrator).

    \b
    Examples:
      rolecall service install
      rolecall service install --for-image --grace 60   # in an image, before Sysprep
    """
    _windows_only()
    from rolecall.worker import service_entry, winservice
    from rolecall.worker.service import service_config

    base = getattr(sys, "_base_executable", "") or ntpath.join(sys.base_prefix, "python.exe")
    config = service_config(
        base_python=base,
        host_script=str(Path(service_entry.__file__).absolute()),
        command=command or default_command(str(Path(sys.executable).parent)),
        data_dir=data_dir
        or ntpath.join(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "rolecall"),
        grace_s=grace,
        for_image=for_image,
        launcher=launcher,
    )
    done = winservice.install(config)
    typer.echo(f"service {config.name} {done}: {config.image_path}")
    typer.echo(f"it runs: {config.parameters['Command']}")


@service_app.command("uninstall")
def uninstall() -> None:
    """Stop the service (the agent drains) and delete it.

    \b
    Example:
      rolecall service uninstall
    """
    _windows_only()
    from rolecall.worker import winservice

    existed = winservice.uninstall()
    typer.echo("service removed" if existed else "no service to remove")


@service_app.command("selfcheck")
def selfcheck(
    reboot_state: Annotated[
        Path | None,
        Opt(metavar="DIR", help="Scratch directory for the reboot check (kept across a reboot)."),
    ] = None,
    reboot_phase: Annotated[
        str,
        Opt(
            metavar="PHASE",
            help="before: record this boot; after: check the machine rebooted since.",
        ),
    ] = "before",
) -> None:
    """Exercise this machine's job handling (no storage): grandchild kill on timeout, exit
    codes through the PowerShell wrapper, hostile arguments, PATH refresh, boot time.

    \b
    Examples:
      rolecall service selfcheck
      rolecall service selfcheck --reboot-state C:/rc-check --reboot-phase after
    """
    from rolecall.worker.selfcheck import run_checks

    results = run_checks(reboot_state, reboot_phase)
    width = max(len(c.name) for c in results)
    for c in results:
        typer.echo(f"{'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}")
    raise typer.Exit(0 if all(c.passed for c in results) else 1)
