"""The dashboard's routes: three pages (fleet, runs, poison), their drill-downs, a run's logs,
and ``/metrics``. Every route is a GET: nothing here can enqueue, cancel or change a baseline.

A page is rendered whole once; ``static/live.js`` then fetches the same address with
``?fragment=1`` every few seconds and swaps the part that moves, so a run's progress bar
advances without a reload. Both are served from the cached state (state.py), so polling
costs storage nothing between refreshes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rolecall import __version__
from rolecall.controller.web import model, pages
from rolecall.controller.web.gate import Gate
from rolecall.controller.web.metrics import DashboardCollector
from rolecall.controller.web.state import DashboardState
from rolecall.schemas.errors import InvalidName, NotFound, RolecallError
from rolecall.schemas.names import Names

HERE = Path(__file__).resolve().parent
#: a log is shown up to its last this many bytes (the full one: ``rolecall logs``)
LOG_TAIL_BYTES = 4 * 1024 * 1024
LIVE_EVERY_MS = 2000


class Pages:
    def __init__(self, state: DashboardState) -> None:
        self.state = state
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            segments=pages.segments, ago=pages.ago, done=pages.done, tail=pages.tail,
            statuses=model.STATUSES, version=__version__, namespace=state.namespace,
            every=LIVE_EVERY_MS,
        )  # fmt: skip

    def render(self, request: Request, name: str, code: int = 200, **data: Any) -> Response:
        """The page, or only its moving part when live.js asks (``?fragment=1``)."""
        fragment = request.query_params.get("fragment") == "1"
        template = f"_{name}.html" if fragment else f"{name}.html"
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "fragment"]
        live = f"{request.url.path}?{urlencode([*query, ('fragment', '1')])}"
        html = self.env.get_template(template).render(
            request=request, live=live, stale=self.state.errors(), **data
        )
        return HTMLResponse(html, code)

    # --- the fleet ---------------------------------------------------------------------

    def fleet(self, request: Request) -> Response:
        return self.render(request, "fleet", fleet=self.state.fleet(), inline=pages.INLINE_CELLS)

    def role(self, request: Request) -> Response:
        fleet = self.state.fleet()
        role = fleet.role(request.path_params["role"])
        if role is None:
            return self._missing(request, f"no role {request.path_params['role']!r}")
        status = request.query_params.get("status", "")
        cells = [c for c in role.cells if not status or c.status == status]
        shown, number, pages_n = pages.page_of(cells, _int(request, "page"), pages.CELLS_PER_PAGE)
        problems = [c for c in cells if c.status != "ready"][: pages.ROWS]
        # page_no, not page: the templates' ``page`` names the section the nav highlights
        return self.render(request, "role", role=role, cells=shown, status=status,
                           page_no=number, pages=pages_n, problems=problems,
                           fleet=fleet)  # fmt: skip

    # --- runs --------------------------------------------------------------------------

    def runs(self, request: Request) -> Response:
        everything = self.state.runs()
        role, state = request.query_params.get("role", ""), request.query_params.get("state", "")
        shown = pages.filter_runs(everything, role, state)
        return self.render(request, "runs", runs=shown[: pages.ROWS], matching=len(shown),
                           role=role, state=state, roles=sorted({r.role for r in everything}),
                           states=sorted({r.state for r in everything}))  # fmt: skip

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        found = self._view(run_id)
        if found is None:
            return self._missing(request, f"no run {run_id!r}")
        view, order = found
        counts = model.run_counts(view)
        failed, other = pages.target_rows(view)
        return self.render(request, "run", run=view, counts=counts, total=len(view.targets),
                           waves=pages.waves(view, order), failed=failed, other=other)  # fmt: skip

    def log(self, request: Request) -> Response:
        run_id, target = request.path_params["run_id"], request.path_params["target"]
        found = self._view(run_id)
        t = found[0].targets.get(target) if found else None
        if t is None:
            return PlainTextResponse(f"no target {target!r} in run {run_id!r}\n", 404)
        if not t.log_blob:
            return PlainTextResponse(f"--- stdout ---\n{t.stdout_tail}\n--- stderr ---\n"
                                     f"{t.stderr_tail}\n")  # fmt: skip
        container, path = Names.split_blob_address(t.log_blob)
        if container != self.state.storage.names.logs_container:
            return PlainTextResponse("the log is not in this namespace's logs container\n", 404)
        try:
            data = self.state.storage.get_blob(container, path).data
        except NotFound:
            return PlainTextResponse("the log is gone (deleted or expired)\n", 404)
        return PlainTextResponse(data[-LOG_TAIL_BYTES:].decode("utf-8", "replace"))

    # --- poison and metrics ------------------------------------------------------------

    def poison(self, request: Request) -> Response:
        return self.render(request, "poison", poison=self.state.poison(),
                           queues=self.state.poison_records())  # fmt: skip

    def _view(self, run_id: str) -> Any:
        try:
            return self.state.run(run_id)
        except InvalidName:
            return None

    def _missing(self, request: Request, what: str) -> Response:
        return self.render(request, "missing", code=404, what=what)


def _int(request: Request, name: str) -> int:
    raw = request.query_params.get(name, "1")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 7 else 1


def create_app(
    state: DashboardState, *, token: str | None = None, hosts: tuple[str, ...] = ()
) -> Gate:
    """The dashboard as an ASGI app, behind its gate (gate.py)."""
    p = Pages(state)
    registry = CollectorRegistry()
    registry.register(DashboardCollector(state))
    ProcessCollector(registry=registry)

    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    app = Starlette(
        routes=[
            Route("/", p.fleet),
            Route("/fleet/{role}", p.role),
            Route("/runs", p.runs),
            Route("/runs/{run_id}", p.run),
            Route("/runs/{run_id}/logs/{target}", p.log),
            Route("/poison", p.poison),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={RolecallError: _unavailable},
    )
    return Gate(app, token=token, hosts=hosts)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """Storage refused and there is nothing older to show: one line, 503."""
    text = exc.message if isinstance(exc, RolecallError) else str(exc)
    return PlainTextResponse(f"storage unavailable: {text}\n", 503)
