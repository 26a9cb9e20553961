"""The ``rolecall`` command: the worker agent and the operators' commands in one tool.

Imports are deferred into each command so the worker starts fast (boot time counts).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from rolecall.controller import cli as ops
from rolecall.controller.cli_admin import baseline_app, names, poison_app
from rolecall.controller.cli_agents import agent_app
from rolecall.controller.cli_security import keys_app, sas_app
from rolecall.controller.cli_service import controller
from rolecall.controller.context import Ctx
from rolecall.worker.cli import worker
from rolecall.worker.cli_service import service_app

app = typer.Typer(
    name="rolecall",
    help="Boot-time configuration for cloud instances that get lost and reimaged.\n\n"
    "Storage: AZURE_STORAGE_CONNECTION_STRING, or ROLECALL_ACCOUNT_NAME (managed identity), "
    "or ROLECALL_SAS_FILE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option(help="Config file (TOML, JSON or YAML); or ROLECALL_CONFIG.")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Storage namespace (default rc; or ROLECALL_NAMESPACE).")
    ] = None,
) -> None:
    ctx.obj = Ctx(config=config, namespace=namespace)


app.command("worker")(worker)
for fn in (ops.run, ops.status, ops.wait, ops.logs, ops.instances, ops.cancel, controller):
    app.command(fn.__name__)(fn)
app.add_typer(baseline_app, name="baseline")
app.add_typer(agent_app, name="agent")
app.add_typer(poison_app, name="poison")
app.command("names")(names)
app.add_typer(keys_app, name="keys")
app.add_typer(sas_app, name="sas")
app.add_typer(service_app, name="service")

if importlib.util.find_spec("rolecall.devtools") is not None:
    # a source checkout: rolecall/devtools is not in the wheel, so instances never see these
    from rolecall.devtools.cli import register

    register(app)


def main() -> None:
    app(prog_name="rolecall")  # the same name in --help under `python -m rolecall`
