"""The development commands: ``rolecall dev azurite``, ``rolecall demo`` and ``rolecall sim``.

Registered on the ``rolecall`` command only where this package is present (a source
checkout); an installed wheel has none of them. Everything heavy is imported inside the
commands, so registering them costs the agent's start-up nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

dev_app = typer.Typer(help="Local development helpers.", no_args_is_help=True)


@dev_app.command("azurite")
def azurite(
    location: Annotated[
        Path | None, typer.Option(help="Keep data on disk here (default: in memory).")
    ] = None,
    blob_port: Annotated[int, typer.Option(help="Blob port (0 = any free port).")] = 10000,
    queue_port: Annotated[int, typer.Option(help="Queue port (0 = any free port).")] = 10001,
) -> None:
    """Start a local Azurite from the repo's pinned install and print its connection string.

    Runs until Ctrl+C. In another shell, export the string it prints, then run workers with
    fast polling for local work (docs/operators.md, "Local development").

    \b
    Examples:
      rolecall dev azurite
      rolecall dev azurite --location .azurite --blob-port 0 --queue-port 0
    """
    import signal
    import threading

    from rolecall.devtools.azurite import Azurite
    from rolecall.schemas.errors import RolecallError

    try:
        az = Azurite(location, blob_port=blob_port, queue_port=queue_port).start()
    except RolecallError as e:
        typer.echo(f"rolecall dev azurite: {e.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Azurite is running (pid {az.pid}); blob {az.blob_url}, queue {az.queue_url}")
    typer.echo(f"export AZURE_STORAGE_CONNECTION_STRING='{az.connection_string}'")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        az.stop()


def demo(
    connection_string: Annotated[
        str | None,
        typer.Option(help="Use this storage account instead of starting a local Azurite."),
    ] = None,
    http: Annotated[
        str,
        typer.Option(
            metavar="ADDR",
            help="Serve the dashboard here while the demo runs "
            "(loopback PORT or 127.0.0.1:PORT; 0: any free port; off: none).",
        ),
    ] = "0",
    stay: Annotated[
        bool, typer.Option(help="Keep the dashboard up after the demo, until Ctrl-C.")
    ] = False,
) -> None:
    """Watch a small fleet configure itself, survive a reimage mid-job, and converge.

    Starts a local Azurite (from the repo's pinned npm install) unless a connection string
    is given; launches 2 roles x 3 instances as real worker processes; publishes baselines
    from examples/; runs a reconfiguration (--each) and a one-of-N job (--any); reimages one
    instance in the middle of its job; shows the status converging. Leaves nothing running.
    Prints the dashboard's address (rolecall controller --http) and serves it meanwhile.

    \b
    Example:
      rolecall demo          # or: make demo
    """
    from rolecall.devtools.demo import main
    from rolecall.devtools.localfleet import stop_on_sigterm
    from rolecall.schemas.errors import RolecallError

    stop_on_sigterm()
    try:
        code = main(connection_string, None if http == "off" else http, stay)
    except RolecallError as e:
        typer.echo(f"rolecall demo: {e.message}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the development commands to the ``rolecall`` command."""
    from rolecall.devtools.sim.cli import sim

    app.add_typer(dev_app, name="dev")
    app.command("demo")(demo)
    app.command("sim")(sim)
