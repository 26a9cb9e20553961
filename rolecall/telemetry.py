"""Optional OpenTelemetry export, for the worker and the controller (the ``otel`` extra).

Nothing here imports OpenTelemetry unless the environment asks for an exporter:

* ``APPLICATIONINSIGHTS_CONNECTION_STRING``: Azure Monitor (Application Insights), the
  natural target for a system that lives in an Azure Storage account;
* ``OTEL_EXPORTER_OTLP_ENDPOINT``: any OTLP/HTTP collector (the standard ``OTEL_*``
  variables apply).

Without either, :func:`session` yields at once and :func:`span` is a null context: an agent
that does not export pays nothing at start-up, where boot time counts. With one but without
the extra, it says so in one warning line and carries on: telemetry must never stop an
agent from configuring its instance.

Exported: the storage meter (transactions by operation, failed attempts by kind), whatever
gauges and counters the caller adds (the controller's fold), and a span per job (worker) or
per fold round (controller). Azure Monitor's own usage statistics ("statsbeat") are turned
off: they would ask the instance metadata service which VM this is, which is not ours to ask.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from rolecall import __version__

log = logging.getLogger(__name__)

AZURE = "APPLICATIONINSIGHTS_CONNECTION_STRING"
OTLP = "OTEL_EXPORTER_OTLP_ENDPOINT"
INSTALL = "pip install 'rolecall[otel]'"

#: (attributes, value) pairs an instrument reports at each export
Readings = Callable[[], list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Instrument:
    """An observable instrument: read when the exporter collects, never on the hot path."""

    name: str
    description: str
    read: Readings
    unit: str = "1"
    counter: bool = True  # False: a gauge


def exporter_wanted() -> str | None:
    """``azure``, ``otlp`` or None, from the environment alone (no import)."""
    if os.environ.get(AZURE):
        return "azure"
    if os.environ.get(OTLP):
        return "otlp"
    return None


class _Session:
    def __init__(self, tracer: Any, providers: list[Any]) -> None:
        self.tracer = tracer
        self.providers = providers

    def shutdown(self) -> None:
        for p in self.providers:
            try:
                p.shutdown()
            except Exception as e:  # an exporter's failure must not fail the agent's exit
                log.warning("telemetry did not shut down cleanly: %s", e)


class _Current:
    session: _Session | None = None


_current = _Current()


@contextmanager
def session(service: str, instance: str, instruments: list[Instrument]) -> Iterator[None]:
    """Export while the block runs (flushing at its end), if the environment asks for it."""
    kind = exporter_wanted()
    if kind is None or _current.session is not None:
        yield
        return
    try:
        _current.session = _start(kind, service, instance, instruments)
    except ImportError as e:
        log.warning("%s is set but OpenTelemetry is not installed (%s): %s; not exporting",
                    AZURE if kind == "azure" else OTLP, e.name, INSTALL)  # fmt: skip
        yield
        return
    log.info("exporting metrics and traces (%s)", "Azure Monitor" if kind == "azure" else "OTLP")
    try:
        yield
    finally:
        active, _current.session = _current.session, None
        active.shutdown()


def span(name: str, **attributes: str | int) -> AbstractContextManager[Any]:
    """A span around a unit of work (a job, a fold round); nothing when not exporting."""
    if _current.session is None:
        return nullcontext()
    started: AbstractContextManager[Any] = _current.session.tracer.start_as_current_span(
        name, attributes=attributes
    )
    return started


def annotate(**attributes: str | int | None) -> None:
    """Add attributes to the current span, once they are known (a job's run id)."""
    if _current.session is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    for k, v in attributes.items():
        if v is not None:
            current.set_attribute(k, v)


def meter_instruments(meter: Any) -> list[Instrument]:
    """The storage meter as two counters (``storage/meter.py``)."""
    return [
        Instrument("rolecall.storage.transactions", "Storage transactions by operation",
                   lambda: [({"operation": k}, float(n)) for k, n in meter.snapshot().items()]),
        Instrument("rolecall.storage.errors", "Failed storage attempts by kind",
                   lambda: [({"kind": k}, float(n)) for k, n in meter.errors().items()]),
    ]  # fmt: skip


def _start(kind: str, service: str, instance: str, instruments: list[Instrument]) -> _Session:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    spans, metrics = _exporters(kind)
    resource = Resource.create(
        {"service.name": service, "service.instance.id": instance, "service.version": __version__}
    )
    tracing = TracerProvider(resource=resource)
    tracing.add_span_processor(BatchSpanProcessor(spans))
    metering = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(metrics)]
    )
    _observe(metering.get_meter("rolecall", __version__), instruments)
    return _Session(tracing.get_tracer("rolecall", __version__), [metering, tracing])


def _exporters(kind: str) -> tuple[Any, Any]:
    if kind == "azure":
        os.environ.setdefault("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
        from azure.monitor.opentelemetry.exporter import (
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
        )

        return AzureMonitorTraceExporter(), AzureMonitorMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(), OTLPMetricExporter()


def _observe(meter: Any, instruments: list[Instrument]) -> None:
    from opentelemetry.metrics import CallbackOptions, Observation

    for i in instruments:

        def callback(_: CallbackOptions, read: Readings = i.read) -> list[Observation]:
            return [Observation(value, attrs) for attrs, value in read()]

        make = meter.create_observable_counter if i.counter else meter.create_observable_gauge
        make(i.name, callbacks=[callback], unit=i.unit, description=i.description)
