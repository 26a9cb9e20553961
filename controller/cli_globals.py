"""``--config``, ``--namespace`` and ``--debug`` after the subcommand as well as before it
(``rolecall status RUN --namespace prod``), as the Azure CLI takes its global flags anywhere.

Typer builds a command's options from its function's signature, so each operator command is
wrapped in a function whose signature has the three options too; the wrapper files their
values on the root ``Ctx`` (where the root callback put the ones given before the subcommand)
and calls the command. A command with options of its own by those names (``rolecall worker``)
keeps its own.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from rolecall.controller.context import ctx_of

try:  # typer 0.2x carries its own copy of click's exceptions; before, it used click's
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]

__all__ = ["ClickException", "UsageError", "with_global_options"]

_EXTRA = {
    "global_config": (
        "config",
        Annotated[Path | None, typer.Option("--config", metavar="FILE",
                                            help="Config file (TOML, JSON or YAML).")],
    ),
    "global_namespace": (
        "namespace",
        Annotated[str | None, typer.Option("--namespace", metavar="NS",
                                           help="Storage namespace (default rc).")],
    ),
    "global_debug": (
        "debug",
        Annotated[bool, typer.Option("--debug", help="Show tracebacks of failures.")],
    ),
}  # fmt: skip


def with_global_options(app: typer.Typer) -> None:
    """Give every command registered on ``app`` that takes a context the global options."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = _wrapped(info.callback)


def _wrapped(fn: Any) -> Any:
    sig = inspect.signature(fn, eval_str=True)
    if "ctx" not in sig.parameters or {"config", "namespace"} & set(sig.parameters):
        return fn

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {attr: kwargs.pop(name, None) for name, (attr, _) in _EXTRA.items()}
        root = ctx_of(kwargs["ctx"])
        for attr, value in given.items():
            if value:  # not given here: whatever came before the subcommand stands
                setattr(root, attr, value)
        return fn(*args, **kwargs)

    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint,
                          default=False if attr == "debug" else None)
        for name, (attr, hint) in _EXTRA.items()
    ]  # fmt: skip
    command.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*sig.parameters.values(), *extra]
    )
    command.__annotations__ = {
        **{p.name: p.annotation for p in sig.parameters.values()},
        **{name: hint for name, (_, hint) in _EXTRA.items()},
        "return": sig.return_annotation,
    }
    return command
