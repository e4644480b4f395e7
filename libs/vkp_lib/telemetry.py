"""Traces and metrics from the standard OTEL_* variables, with nothing sensitive exported.

- `OTEL_SDK_DISABLED=true` turns everything off.
- `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`: `otlp`, `console` (to stderr) or `none`.
  When unset, `otlp` if an `OTEL_EXPORTER_OTLP_*ENDPOINT` is set, otherwise `none`, so a local
  run without a collector stays quiet.
- The OTLP exporters, the batch processor and the resource read their own standard variables
  (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_RESOURCE_ATTRIBUTES`, ...).
- Propagation is W3C trace context (the API's default, `OTEL_PROPAGATORS`).

Redis commands are traced (OpenTelemetry's Redis instrumentation, once a trace exporter is set):
a span per command whose `db.statement` is the command's name with every argument replaced by
`?`, so neither a key nor a value reaches a span.

Every span passes through `RedactingSpanExporter` before export: URL query strings are cut,
attributes a service marked as sensitive are dropped, and exception messages (which may quote
input) are removed. Spans are read-only once ended, so redaction makes copies at export time, of
the spans that carry something to redact (most, an RPC's own span among them, carry nothing).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.util.types import Attributes

#: Attributes that carry a URL: their query string is cut before export.
URL_ATTRIBUTES = frozenset({"url.full", "http.url", "http.target", "url.original"})
#: Attributes that are never exported, whatever their value.
ALWAYS_DROPPED = frozenset({"url.query", "exception.message", "exception.stacktrace"})
#: The prefix by which a service marks an attribute as sensitive where it sets it.
SENSITIVE_PREFIX = "vkp.sensitive."


def strip_query(url: str) -> str:
    """The URL without its query string and fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class Redactor:
    """Decides what of a set of attributes may leave the process."""

    def __init__(self, sensitive: Iterable[str] = ()) -> None:
        self._sensitive = set(sensitive)
        #: The keys whose value never leaves as it is (besides the sensitive prefix).
        self._changed = frozenset(self._sensitive | ALWAYS_DROPPED | URL_ATTRIBUTES)

    def mark_sensitive(self, *keys: str) -> None:
        """Never export these attribute keys."""
        self._sensitive.update(keys)
        self._changed = frozenset(self._sensitive | ALWAYS_DROPPED | URL_ATTRIBUTES)

    def needed(self, span: ReadableSpan) -> bool:
        """Whether `span` carries anything to redact (else it is exported as it is)."""
        attributes = span.attributes or {}
        return (
            bool(span.events)
            or not self._changed.isdisjoint(attributes)
            or any(key.startswith(SENSITIVE_PREFIX) for key in attributes)
        )

    def attributes(self, attributes: Attributes) -> dict[str, Any]:
        cleaned: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            if key in self._sensitive or key in ALWAYS_DROPPED or key.startswith(SENSITIVE_PREFIX):
                continue
            if key in URL_ATTRIBUTES and isinstance(value, str):
                value = strip_query(value)
            cleaned[key] = value
        return cleaned

    def span(self, span: ReadableSpan) -> ReadableSpan:
        events = [Event(e.name, self.attributes(e.attributes), e.timestamp) for e in span.events]
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=self.attributes(span.attributes),
            events=events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter and hands it redacted copies of the spans."""

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        redactor = self._redactor
        return self._inner.export([redactor.span(s) if redactor.needed(s) else s for s in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def httpx_request_hook(span: trace.Span, request: Any) -> None:
    """An httpx instrumentation hook that keeps the query string out of the span's URL."""
    if not span.is_recording():
        return
    raw = request.url
    if isinstance(raw, tuple):  # the raw transport form: (scheme, host, port, target)
        scheme, host, port, target = raw
        netloc = host.decode() + (f":{port}" if port else "")
        raw = f"{scheme.decode()}://{netloc}{target.decode()}"
    url = strip_query(str(raw))
    span.set_attribute("url.full", url)
    span.set_attribute("http.url", url)


async def httpx_async_request_hook(span: trace.Span, request: Any) -> None:
    httpx_request_hook(span, request)


def _exporter_choice(signal: str) -> str:
    chosen = os.environ.get(f"OTEL_{signal}_EXPORTER", "").strip().lower()
    if chosen:
        return chosen
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    return "otlp" if any(os.environ.get(e) for e in endpoints) else "none"


def _span_exporter(choice: str) -> SpanExporter | None:
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if choice == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if choice == "none":
        return None
    raise ValueError(f"OTEL_TRACES_EXPORTER={choice!r} is not one of otlp, console, none")


def _metric_exporter(choice: str) -> MetricExporter | None:
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    if choice == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    if choice == "none":
        return None
    raise ValueError(f"OTEL_METRICS_EXPORTER={choice!r} is not one of otlp, console, none")


def _instrument_redis() -> None:
    """Every Redis client of the process traced. The instrumentation writes each command as its
    name and `?` per argument (`SET ? ? ? ?`): no key or value content is in a span."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


@dataclass
class Telemetry:
    """The providers a process uses; `shutdown` flushes what is buffered."""

    tracer_provider: trace.TracerProvider
    meter_provider: MeterProvider
    redactor: Redactor

    def shutdown(self) -> None:
        if isinstance(self.tracer_provider, TracerProvider):
            self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    service_name: str,
    *,
    span_exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] = (),
    set_global: bool = True,
    sensitive: Iterable[str] = (),
) -> Telemetry:
    """Providers configured from the OTEL_* variables (or the exporter given, for tests)."""
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    resource = Resource.create({SERVICE_NAME: service_name})
    redactor = Redactor(sensitive)
    exporter = span_exporter or (None if disabled else _span_exporter(_exporter_choice("TRACES")))
    # With nowhere to send spans, none is made (each would cost a call ~30 µs for nothing): the
    # API's no-op tracer, which still carries a caller's trace context on to the next hop.
    tracer_provider: trace.TracerProvider
    if exporter is None:
        tracer_provider = trace.NoOpTracerProvider()
    else:
        sdk_provider = TracerProvider(resource=resource)
        sdk_provider.add_span_processor(
            BatchSpanProcessor(RedactingSpanExporter(exporter, redactor))
        )
        tracer_provider = sdk_provider
    readers = list(metric_readers)
    metric_exporter = None if disabled else _metric_exporter(_exporter_choice("METRICS"))
    if metric_exporter is not None:
        readers.append(PeriodicExportingMetricReader(metric_exporter))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        if exporter is not None:
            _instrument_redis()
    return Telemetry(tracer_provider, meter_provider, redactor)
