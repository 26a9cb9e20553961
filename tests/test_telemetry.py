"""Optional OpenTelemetry (rolecall/telemetry.py): with an OTLP endpoint set, the worker and
the controller export their metrics and a span per job or fold round; without one, nothing of
OpenTelemetry is imported (tests/test_dashboard.py checks the worker's imports).

The collector here is a plain HTTP listener on 127.0.0.1 that decodes what it is sent with
OpenTelemetry's own protobuf messages."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.fleet import ROLECALL, Fleet, cli, cli_json, wait_for


@dataclass
class Collected:
    metrics: set[str] = field(default_factory=set)
    spans: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    services: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, path: str, body: bytes) -> None:
        with self.lock:
            if path == "/v1/metrics":
                m = ExportMetricsServiceRequest.FromString(body)
                for rm in m.resource_metrics:
                    self.services |= _service(rm.resource)
                    for sm in rm.scope_metrics:
                        self.metrics |= {x.name for x in sm.metrics}
            elif path == "/v1/traces":
                t = ExportTraceServiceRequest.FromString(body)
                for rs in t.resource_spans:
                    self.services |= _service(rs.resource)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            attrs = {a.key: str(a.value.string_value or a.value.int_value)
                                     for a in s.attributes}  # fmt: skip
                            self.spans.append((s.name, attrs))


def _service(resource: object) -> set[str]:
    return {a.value.string_value for a in resource.attributes if a.key == "service.name"}  # type: ignore[attr-defined]


@contextmanager
def collector() -> Iterator[tuple[str, Collected]]:
    got = Collected()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            got.take(self.path, body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def test_with_an_otlp_endpoint_the_worker_and_controller_export_metrics_and_spans(
    env: dict[str, str], tmp_path: Path, workers: Fleet
) -> None:
    with collector() as (endpoint, got):
        otel = dict(env, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_METRIC_EXPORT_INTERVAL="500")
        workers.env = otel
        w = workers.worker("web", "web-0")
        wait_for(lambda: any(r["live"] for r in cli_json(env, "instances")), timeout=60,
                 what="the worker registered")  # fmt: skip
        script = tmp_path / "hi.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        run_id = cli(env, "run", "web", "--script", str(script), "--each").stdout.strip()
        log = (tmp_path / "controller.log").open("wb")
        proc = subprocess.Popen([ROLECALL, "controller", "--poll-max", "0.3"], env=otel,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for(lambda: cli_json(env, "status", run_id, "--no-fold")["state"] == "succeeded",
                     timeout=60, what="the run folded by the controller")  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            log.close()
        w.stop()
        wait_for(lambda: {"rolecall-worker", "rolecall-controller"} <= got.services
                 and {"rolecall.fold", "rolecall.job"} <= {n for n, _ in got.spans},
                 timeout=30, what="both services' spans at the collector")  # fmt: skip
    assert "rolecall.storage.transactions" in got.metrics
    assert {"rolecall.fold.completions", "rolecall.fold.lag"} <= got.metrics
    jobs = [attrs for name, attrs in got.spans if name == "rolecall.job"]
    assert any(a.get("run_id") == run_id for a in jobs), jobs


def test_an_endpoint_without_the_extra_is_one_warning_and_work_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rolecall import telemetry

    monkeypatch.setenv(telemetry.OTLP, "http://127.0.0.1:9")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.metrics", None)  # as if not installed
    ran = []
    with telemetry.session("rolecall-worker", "web-0", []), telemetry.span("rolecall.job"):
        ran.append(True)
    assert ran == [True]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].endswith(
        "pip install 'rolecall[otel]'; not exporting"
    )
