"""What every operator command needs: settings, storage, a signer, a console, and one way of
turning expected failures into a clear message and an exit code (no tracebacks).

Output conventions: stdout carries the command's answer and nothing else (with ``-o json``,
exactly one JSON document); progress, notices and errors go to stderr, errors as one line
``error: ...`` that names what to fix, never wrapped (a pipe is not 80 columns wide).
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from rolecall.schemas.errors import ConfigError, RolecallError

if TYPE_CHECKING:  # kept out of `rolecall worker`'s start-up path
    from rich.console import Console

    from rolecall.controller.config import ControllerSettings
    from rolecall.controller.published import PublishedPayloads
    from rolecall.controller.signing import Signer
    from rolecall.schemas.signing import TrustedKeys
    from rolecall.storage.clients import Storage

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1  # the run (or wait) ended with failed or unreachable targets
EXIT_ERROR = 2  # the command could not do its work: bad input, unknown run, storage refused
EXIT_TIMEOUT = 3  # wait gave up before the run finished

#: the option of every command that sends jobs: without a signing key they refuse, unless told
Unsigned = Annotated[
    bool,
    typer.Option(
        "--unsigned", help="No signing key: send unsigned (only workers run with "
        "--accept-unsigned take them; development only).",
    ),
]  # fmt: skip

NO_SIGNING_KEY = (
    "no signing key: make one with `rolecall keys generate --out FILE`, set "
    "ROLECALL_SIGNING_KEY=FILE (--signing-key) and give workers FILE.pub as a trusted key; "
    "or pass --unsigned to send unsigned jobs (development only)"
)


@dataclass
class Ctx:
    config: Path | None = None
    namespace: str | None = None
    #: show tracebacks (``--debug``)
    debug: bool = False
    #: a subcommand's own setting flags, set before ``settings`` is first read; like the root
    #: flags they are explicit values, so they beat environment and config file
    flags: dict[str, Any] = field(default_factory=dict)
    _console: Console | None = None
    _storage: Storage | None = None
    _settings: ControllerSettings | None = None

    @property
    def console(self) -> Console:
        """stdout. Piped, it is wide enough that no table cell is cut to fit 80 columns."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(width=None if sys.stdout.isatty() else 200)
        return self._console

    @property
    def err(self) -> Console:
        """stderr, for progress and notices (``-o json`` keeps stdout to the document)."""
        from rich.console import Console

        return Console(stderr=True, soft_wrap=True, highlight=False)

    @property
    def settings(self) -> ControllerSettings:
        from rolecall.controller.config import ControllerSettings

        if self._settings is None:
            flags = {"config_file": self.config, "namespace": self.namespace, **self.flags}
            self._settings = ControllerSettings(**{k: v for k, v in flags.items() if v})
        return self._settings

    @property
    def storage(self) -> Storage:
        from rolecall.storage.clients import Storage

        if self._storage is None:
            self._storage = Storage(self.settings)
        return self._storage

    def signer(self) -> Signer | None:
        from rolecall.controller.signing import load_signer

        return load_signer(self.settings.signing_key)

    def job_signer(self, unsigned: bool) -> Signer | None:
        """The signer for a command that sends jobs: refused without a key unless the
        operator said ``--unsigned``."""
        signer = self.signer()
        if signer is None and not unsigned:
            raise ConfigError(NO_SIGNING_KEY)
        return signer

    def own_keys(self, signer: Signer | None) -> TrustedKeys | None:
        """The keys jobs this controller sent were signed with: its signing key's public half
        and its ``trusted_keys`` (earlier keys); None when it sends unsigned."""
        if signer is None:
            return None
        from rolecall.schemas.signing import TrustedKeys

        return TrustedKeys(self.settings.trusted_keys, [signer.public_key()])

    def published(self) -> PublishedPayloads:
        from rolecall.controller.published import PublishedPayloads

        return PublishedPayloads(self.settings.cache_dir, self.storage.blob_endpoint)


def ctx_of(typer_ctx: typer.Context) -> Ctx:
    obj = typer_ctx.find_root().obj
    if not isinstance(obj, Ctx):
        obj = Ctx()
        typer_ctx.find_root().obj = obj
    return obj


def error_line(text: str) -> None:
    """One line on stderr, ``error:`` in red at a terminal; never wrapped."""
    head = "\x1b[31merror:\x1b[0m" if sys.stderr.isatty() else "error:"
    sys.stderr.write(f"{head} {' '.join(text.split())}\n")
    sys.stderr.flush()


def describe(e: BaseException) -> str:
    """An expected failure in one line: pydantic's errors without their documentation URLs."""
    from pydantic import ValidationError

    if isinstance(e, RolecallError):
        return e.message
    if isinstance(e, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in e.errors()[:3]
        ]
        return "invalid settings: " + "; ".join(parts)
    return str(e)


def expected_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Expected failures print one line on stderr and exit 2; a traceback only with
    ``--debug``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (RolecallError, ValueError) as e:  # ValueError: pydantic validation of flags
            if _debugging(args, kwargs):
                traceback.print_exc()
            error_line(describe(e))
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def _debugging(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    # typer hands commands its own copy of click's Context, not a typer.Context
    ctx = next((a for a in (*args, *kwargs.values()) if hasattr(a, "find_root")), None)
    return ctx is not None and ctx_of(ctx).debug


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
