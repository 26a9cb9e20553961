"""Who may read the dashboard, and what a browser may do with it.

The pages show the whole fleet: instance names, what their jobs printed, why messages were
poisoned. So:

* On a loopback address without a token, only requests naming a loopback host are served
  (``Host: 127.0.0.1:8080``, ``localhost``): a web page elsewhere cannot read the dashboard by
  pointing a name it controls at 127.0.0.1 (DNS rebinding).
* With a token (required for any other address, server.py), every request carries it: as
  ``Authorization: Bearer <token>`` (Prometheus' ``authorization`` setting) or as the cookie
  that opening any page with ``?token=<token>`` sets once (HttpOnly, SameSite=Strict), after
  which the address bar no longer shows it.
* Every response forbids scripts, styles and frames from anywhere but the dashboard itself
  (Content-Security-Policy): what an instance reports is escaped by the templates, and even
  markup that got through could not run.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "rolecall_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _hostname(host: str) -> str:
    """``127.0.0.1`` of ``127.0.0.1:8080``, ``[::1]`` of ``[::1]:8080``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class Gate:
    """ASGI middleware: the token or the loopback host check, then the security headers."""

    def __init__(self, app: ASGIApp, *, token: str | None, hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.token = token
        self.hosts = (*LOOPBACK_HOSTS, *hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(Request(scope))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)

    def _refusal(self, request: Request) -> Response | None:
        if self.token is None:
            if _hostname(request.headers.get("host", "")).lower() not in self.hosts:
                return PlainTextResponse("this dashboard answers loopback names only\n", 400)
            return None
        given = request.query_params.get("token")
        if given is not None:
            if not _same(given, self.token):
                return PlainTextResponse("wrong token\n", 401)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            moved = RedirectResponse(target, status_code=303)
            moved.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return moved
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and _same(bearer[7:].strip(), self.token):
            return None
        if _same(request.cookies.get(COOKIE), self.token):
            return None
        return PlainTextResponse(
            "a token is required: open this address with ?token=TOKEN once, or send "
            "Authorization: Bearer TOKEN\n",
            401,
            headers={"www-authenticate": "Bearer"},
        )
