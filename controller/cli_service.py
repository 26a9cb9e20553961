"""``rolecall controller``: the service that folds reports and drives dispatch, and, with
``--http``, serves the dashboard and /metrics beside it (controller/web/)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rolecall.controller.context import Ctx, ctx_of, expected_errors

if TYPE_CHECKING:  # kept out of `rolecall worker`'s start-up path, which imports this module
    from rolecall.controller.service import FoldProgress
    from rolecall.telemetry import Instrument

Opt = typer.Option

HttpAddress = Annotated[
    str | None,
    Opt("--http", metavar="ADDR", help="Serve the dashboard and /metrics here: PORT "
        "(loopback), HOST:PORT or [V6]:PORT. Needs the web extra."),
]  # fmt: skip
HttpToken = Annotated[
    str | None,
    Opt(help="Required of every request (Bearer, or ?token= once); or ROLECALL_HTTP_TOKEN. "
        "Needed for a non-loopback --http."),
]  # fmt: skip


@expected_errors
def controller(
    ctx: typer.Context,
    poll_max: Annotated[
        float, Opt(metavar="SECONDS", help="Longest idle poll interval, seconds.")
    ] = 60.0,
    log_level: Annotated[str | None, Opt(help="debug, info, warning, error.")] = None,
    log_format: Annotated[
        str | None, Opt(help="json, text, or auto (default): text on a terminal, else JSON.")
    ] = None,
    http: HttpAddress = None,
    http_token: HttpToken = None,
) -> None:
    """Run the controller service: fold events into run records and dispatch rate-controlled
    runs. Optional: status and wait fold too. Several may run at once.

    \b
    Examples:
      rolecall controller
      rolecall controller --poll-max 5 --log-format json
      rolecall controller --http 8080   # dashboard at http://127.0.0.1:8080/
    """
    import signal
    import threading
    from contextlib import nullcontext

    from rolecall import logs, telemetry
    from rolecall.controller.run_options import seconds
    from rolecall.controller.service import FoldProgress, serve

    seconds("--poll-max", poll_max)
    c = ctx_of(ctx)
    c.flags.update(log_level=log_level, log_format=log_format, http_token=http_token)
    logs.configure(c.settings.log_level, fmt=c.settings.log_format)
    progress = FoldProgress()
    web = _dashboard(c, http, progress) if http else nullcontext()
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    instruments = telemetry.meter_instruments(c.storage.meter) + _fold_instruments(progress)
    with web, telemetry.session("rolecall-controller", c.settings.namespace, instruments):
        serve(c.storage, _dispatcher(c), stop, poll_max_s=poll_max, progress=progress)


def _dispatcher(c: Ctx) -> Any:
    from rolecall.controller.dispatch import Dispatcher

    return Dispatcher(c.storage, c.signer())


def _dashboard(c: Ctx, http: str, progress: FoldProgress) -> AbstractContextManager[str]:
    """The dashboard's context (controller/web/server.py); checked before anything starts."""
    from rolecall.controller.web.server import check, parse_address, serving
    from rolecall.controller.web.state import Components

    address = parse_address(http)
    secret = c.settings.http_token
    token = secret.get_secret_value() if secret is not None else None
    check(address, token)
    components = Components(meters={"fold": c.storage.meter}, progress=progress)
    return serving(c.settings, address, token, components)


def _fold_instruments(progress: FoldProgress) -> list[Instrument]:
    from rolecall.telemetry import Instrument

    def read(key: str) -> Any:
        return lambda: [({}, float(progress.snapshot()[key]))]

    return [
        Instrument("rolecall.fold.completions", "Completions folded", read("completions")),
        Instrument("rolecall.fold.reports", "Reports folded or refused", read("reports")),
        Instrument("rolecall.fold.lag", "Age of the oldest waiting report", read("lag_s"),
                   unit="s", counter=False),
    ]  # fmt: skip
