"""The ``rolecall`` command: the worker agent and the operators' commands in one tool.

Imports are deferred into each command so the worker starts fast (boot time counts).

Every mistake an operator can make on the command line ends the same way: one line on stderr
that names what to fix, and exit code 2 (``main``). Click's own usage errors are folded into
that line too, instead of its four-line usage block; ``--debug`` brings tracebacks back.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from rolecall.controller import cli as ops
from rolecall.controller import cli_fleet, cli_runs
from rolecall.controller.cli_admin import baseline_app, names, poison_app
from rolecall.controller.cli_agents import agent_app
from rolecall.controller.cli_globals import ClickException, UsageError, with_global_options
from rolecall.controller.cli_security import keys_app, sas_app
from rolecall.controller.cli_service import controller
from rolecall.controller.context import EXIT_ERROR, Ctx, error_line
from rolecall.worker.cli import worker
from rolecall.worker.cli_service import service_app

app = typer.Typer(
    name="rolecall",
    help="Boot-time configuration for cloud instances that get lost and reimaged.\n\n"
    "Storage: AZURE_STORAGE_CONNECTION_STRING, or ROLECALL_ACCOUNT_NAME (managed identity), "
    "or ROLECALL_SAS_FILE. Exit codes: 0 done, 1 targets failed or unreachable, 2 the "
    "command could not do its work, 3 a wait timed out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(metavar="FILE", help="Config file (TOML, JSON or YAML); or ROLECALL_CONFIG."),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(metavar="NS", help="Storage namespace (default rc; or ROLECALL_NAMESPACE)."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of failures.")]


def _version(value: bool) -> None:
    if value:
        from rolecall.schemas import __version__
        from rolecall.schemas.version import CONTRACT

        typer.echo(f"rolecall {__version__} (contract {CONTRACT})")
        raise typer.Exit()


VersionOpt = Annotated[
    bool,
    typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
]


@app.callback()
def _root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    namespace: NamespaceOpt = None,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    ctx.obj = Ctx(config=config, namespace=namespace, debug=debug)


app.command("worker")(worker)
for fn in (ops.run, ops.status, ops.wait, cli_runs.logs, cli_runs.runs, cli_runs.retry,
           cli_fleet.instances, cli_fleet.history, ops.cancel, controller):  # fmt: skip
    app.command(fn.__name__)(fn)
app.add_typer(baseline_app, name="baseline")
app.add_typer(agent_app, name="agent")
app.add_typer(poison_app, name="poison")
app.command("names")(names)
app.add_typer(keys_app, name="keys")
app.add_typer(sas_app, name="sas")
app.add_typer(service_app, name="service")
for sub in (app, baseline_app, agent_app, poison_app, keys_app, sas_app):
    with_global_options(sub)

if importlib.util.find_spec("rolecall.devtools") is not None:
    # a source checkout: rolecall/devtools is not in the wheel, so instances never see these
    from rolecall.devtools.cli import register

    register(app)


def run(args: Sequence[str]) -> int:
    """``rolecall ARGS``, every failure one line on stderr with its exit code."""
    debug = "--debug" in args
    try:
        command = typer.main.get_command(app)
        rv = command.main(args=list(args), prog_name="rolecall", standalone_mode=False)
    except UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:
            typer.echo(e.ctx.get_help())  # `rolecall` or `rolecall baseline` alone: the help
            return 0
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        error_line(_lower_first(e.format_message()) + hint)
        return EXIT_ERROR
    except ClickException as e:
        error_line(e.format_message())
        return e.exit_code
    except typer.Abort:
        error_line("aborted")
        return 130
    except Exception as e:  # a bug: still one line, unless asked for the traceback
        if debug:
            traceback.print_exc()
        error_line(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0


def _lower_first(text: str) -> str:
    """Click's message as one clause: ``missing argument 'RUN'``."""
    text = text.replace("Value error, ", "").strip().rstrip(".")
    return text[:1].lower() + text[1:]


def main() -> None:
    sys.exit(run(sys.argv[1:]))
