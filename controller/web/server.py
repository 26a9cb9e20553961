"""Serving the dashboard beside the fold: ``rolecall controller --http ADDR``.

Everything that can be wrong is found before anything starts, and said in one line: the
address, a non-loopback address without a token, a token too short to be one, the ``web``
extra missing, the port taken. The server then runs in a thread of its own (uvicorn, on a
socket bound here), reading storage through a client of its own, until the controller stops.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rolecall.schemas.errors import ConfigError
from rolecall.schemas.settings import StorageSettings

log = logging.getLogger(__name__)

WEB_MODULES = ("starlette", "jinja2", "uvicorn", "prometheus_client")
INSTALL = "pip install 'rolecall[web]'"
MIN_TOKEN = 16
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a name: whatever it resolves to, it is not promised to stay local

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/"


def parse_address(text: str) -> Address:
    """``8080`` (loopback), ``HOST:PORT`` or ``[V6]:PORT``; port 0 takes any free port."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text.strip()
    host = host.strip("[]") if host.startswith("[") else host
    if ":" in host and not text.strip().startswith("["):
        raise ConfigError(f"--http {text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    if not (port.isascii() and port.isdigit() and int(port) < 65536):
        raise ConfigError(f"--http {text!r}: give PORT, HOST:PORT or [IPV6]:PORT")
    return Address(host or "0.0.0.0", int(port))  # noqa: S104 - ":8080" means every address


def check(address: Address, token: str | None) -> None:
    """Refuse, in one line, what must not start."""
    if token is not None and len(token) < MIN_TOKEN:
        raise ConfigError(f"--http-token must be at least {MIN_TOKEN} characters")
    if not address.loopback and token is None:
        raise ConfigError(
            f"--http {address.host}:{address.port} is not a loopback address: set "
            "--http-token or ROLECALL_HTTP_TOKEN (the dashboard shows the whole fleet)"
        )
    missing = [m for m in WEB_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"--http needs the web extra ({', '.join(missing)} missing): {INSTALL}")


def bind(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {address.host}:{address.port}: {e.strerror}") from e
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


class Server:
    """uvicorn in a thread, on a socket bound beforehand (so a taken port is said at once)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        # log_config=None: uvicorn must not replace rolecall's logging (rolecall/logs.py)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                log_level="warning", timeout_graceful_shutdown=2)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)

    def _serve(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the dashboard's web server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


@contextmanager
def serving(
    settings: StorageSettings,
    address: Address,
    token: str | None,
    components: Any,
    *,
    ttl_s: float | None = None,
) -> Iterator[str]:
    """Serve the dashboard while the block runs; yields its address."""
    from rolecall.controller.web.app import create_app
    from rolecall.controller.web.state import DEFAULT_TTL_S, DashboardState
    from rolecall.storage.clients import Storage

    check(address, token)
    sock = bind(address)
    storage = Storage(settings)  # its own client and meter (component "dashboard")
    state = DashboardState(storage, ttl_s=ttl_s or DEFAULT_TTL_S, components=components)
    server = Server(create_app(state, token=token, hosts=(address.host,)), sock)
    server.start()
    url = address.url(sock.getsockname()[1])
    log.info("dashboard at %s (metrics at %smetrics)%s", url, url,
             "; a token is required" if token else "")  # fmt: skip
    try:
        yield url
    finally:
        server.stop()
        state.close()
        storage.close()
