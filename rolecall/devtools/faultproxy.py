"""A loopback HTTP proxy that injects storage faults between workers and Azurite.

For a configurable fraction of requests it answers 503 without forwarding, forwards and then
answers 500 (the operation happened but the client believes it failed: the nasty case), resets
the connection before or after forwarding, or delays the request. Everything else is passed
through unchanged. It never listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RST = struct.pack("ii", 1, 0)
FAULTS = ("busy_503", "error_500_after", "reset_before", "reset_after", "delay")


@dataclass
class FaultPlan:
    rate: float = 0.0  # fraction of requests that get a fault
    kinds: tuple[str, ...] = FAULTS
    delay_s: float = 1.0
    seed: int | None = None
    #: refuse (503) every request this matches, e.g. "all sends to the events queue"
    blocked: Callable[[str, str], bool] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rnd = random.Random(self.seed)  # noqa: S311 - not crypto

    def draw(self, method: str = "", path: str = "") -> str | None:
        if self.blocked is not None and self.blocked(method, path):
            with self.lock:
                self.counts["blocked"] += 1
            return "busy_503"
        with self.lock:
            self.counts["requests"] += 1
            if self.rate <= 0 or self._rnd.random() >= self.rate:
                return None
            kind = self._rnd.choice(self.kinds)
            self.counts[kind] += 1
            return kind


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.plan.draw(self.command, self.path)
        if fault == "busy_503":
            return self._reply(503, _error("ServerBusy", "The server is busy (injected)."))
        if fault == "reset_before":
            return self._reset()
        if fault == "delay":
            time.sleep(self.server.plan.delay_s)
        try:
            status, headers, data = self._forward(body)
        except OSError:
            return self._reply(503, _error("ServerBusy", "Upstream unreachable."))
        if fault == "error_500_after":
            return self._reply(500, _error("InternalError", "Injected after forwarding."))
        if fault == "reset_after":
            return self._reset()
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        self.close_connection = True
        # linger on, timeout 0: close() sends RST instead of FIN
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
        self.connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _relay


def _error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    plan: FaultPlan
    upstream_port: int

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on a reset we injected are not news


class FaultProxy:
    """``with FaultProxy(upstream_port, FaultPlan(rate=0.1)) as p: p.port``"""

    def __init__(self, upstream_port: int, plan: FaultPlan | None = None) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.plan = plan or FaultPlan()
        self.server.upstream_port = upstream_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def plan(self) -> FaultPlan:
        return self.server.plan

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
