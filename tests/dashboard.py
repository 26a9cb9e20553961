"""Test helpers for the dashboard: a real ``rolecall controller --http`` process, and what a
browser or Prometheus would ask of it (plain HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from rolecall.devtools.waiting import wait_for
from tests.fleet import ROLECALL


@dataclass
class Controller:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def lines(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def address(self) -> str | None:
        for rec in self.lines():
            msg = str(rec.get("msg", ""))
            if msg.startswith("dashboard at "):
                return msg.split()[2]
        return None


@contextmanager
def controller(env: dict[str, str], tmp: Path, *args: str) -> Iterator[Controller]:
    """``rolecall controller --http 127.0.0.1:0 ARGS`` until the block ends (SIGTERM)."""
    log = tmp / "controller.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [ROLECALL, "controller", "--poll-max", "0.3", "--log-format", "json",
             "--http", "127.0.0.1:0", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    c = Controller(proc, log)
    try:
        c.url = wait_for(lambda: c.address() or (proc.poll() is not None and "exited"),
                         timeout=60, what="the dashboard's address in the log")  # fmt: skip
        assert c.url != "exited", log.read_text()
        yield c
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


def get(url: str, *, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    """One request, as a browser or a scraper would send it; redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: object, **k: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=60) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode())


def metrics(url: str, **kw: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus-client's own parser: (sample name, labels) -> value."""
    reply = get(url + "metrics", **kw)  # type: ignore[arg-type]
    assert reply.status == 200, reply.body
    out = {}
    for family in text_string_to_metric_families(reply.body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(url: str) -> set[str]:
    """The name of every metric ``/metrics`` describes, as it is queried (``_total``...)."""
    suffix = {"counter": "_total", "info": "_info"}
    return {f.name + suffix.get(f.type, "")
            for f in text_string_to_metric_families(get(url + "metrics").body)}  # fmt: skip


def samples(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
            ) -> dict[tuple[tuple[str, str], ...], float]:  # fmt: skip
    return {labels: v for (n, labels), v in parsed.items() if n == name}
