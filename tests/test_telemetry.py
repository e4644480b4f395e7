"""What leaves the process in spans: query strings and sensitive attributes never do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from vkp_lib.telemetry import (
    RedactingSpanExporter,
    Redactor,
    httpx_async_request_hook,
    setup_telemetry,
    strip_query,
)
from vkp_lib.testing.data import TEST_PEOPLE

NATIONAL_ID = TEST_PEOPLE[1].national_id


def test_strip_query_keeps_scheme_host_and_path() -> None:
    url = f"https://epj.example:8443/4601/fhir/Patient?identifier={NATIONAL_ID}#x"
    assert strip_query(url) == "https://epj.example:8443/4601/fhir/Patient"


def test_redactor_drops_marked_and_prefixed_attributes_and_cuts_urls() -> None:
    redactor = Redactor(["vkp.patient"])
    cleaned = redactor.attributes(
        {
            "vkp.patient": NATIONAL_ID,
            "vkp.sensitive.name": "x",
            "url.full": f"http://h/p?id={NATIONAL_ID}",
            "url.query": f"id={NATIONAL_ID}",
            "exception.message": f"no patient {NATIONAL_ID}",
            "rpc.method": "SubmitEvent",
        }
    )
    assert cleaned == {"url.full": "http://h/p", "rpc.method": "SubmitEvent"}


def test_exported_span_is_a_redacted_copy() -> None:
    memory = InMemorySpanExporter()
    redactor = Redactor()
    redactor.mark_sensitive("vkp.patient")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(memory, redactor)))
    with provider.get_tracer("t").start_as_current_span("lookup") as span:
        span.set_attribute("vkp.patient", NATIONAL_ID)
        span.set_attribute("vkp.kind", "alarm")
        span.add_event("fetched", {"http.url": f"http://h/p?id={NATIONAL_ID}"})
    (exported,) = memory.get_finished_spans()
    assert dict(exported.attributes or {}) == {"vkp.kind": "alarm"}
    assert dict(exported.events[0].attributes or {}) == {"http.url": "http://h/p"}
    assert exported.context == span.get_span_context()


def test_a_span_with_nothing_to_redact_is_exported_as_it_ended() -> None:
    memory = InMemorySpanExporter()
    plain = ReadableSpan("/vkp.ingest.v1.IngestService/SubmitEvent", attributes={"rpc.method": "x"})
    marked = ReadableSpan("fetch", attributes={"vkp.sensitive.patient": NATIONAL_ID, "n": 1})
    RedactingSpanExporter(memory, Redactor()).export([plain, marked])
    exported_plain, exported_marked = memory.get_finished_spans()
    assert exported_plain is plain
    assert exported_marked is not marked
    assert dict(exported_marked.attributes or {}) == {"n": 1}


def test_setup_telemetry_refuses_an_unknown_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin-over-carrier-pigeon")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        setup_telemetry("vkp-test", set_global=False)


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        return


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_httpx_hook_keeps_the_query_string_out_of_the_client_span(http_server: str) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))  # no redaction: the hook alone
    async with httpx.AsyncClient() as client:
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=provider, request_hook=httpx_async_request_hook
        )
        response = await client.get(
            f"{http_server}/fhir/Patient", params={"identifier": NATIONAL_ID}
        )
    assert response.status_code == 200
    (span,) = memory.get_finished_spans()
    urls = [v for k, v in (span.attributes or {}).items() if k in ("url.full", "http.url")]
    assert urls
    assert all(u == f"{http_server}/fhir/Patient" for u in urls)
    assert NATIONAL_ID not in span.to_json()


def test_with_nowhere_to_export_no_span_is_made_but_a_callers_context_flows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    telemetry = setup_telemetry("vkp-test", set_global=False)
    tracer = telemetry.tracer_provider.get_tracer("t")
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    try:
        alone = tracer.start_span("call")
        continued = tracer.start_span(
            "call", context=trace.set_span_in_context(NonRecordingSpan(caller))
        )
        assert not alone.is_recording()
        assert not alone.get_span_context().is_valid
        assert not continued.is_recording()
        assert continued.get_span_context() == caller
    finally:
        telemetry.shutdown()


def test_an_exporter_records_every_span() -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("vkp-test", span_exporter=exporter, set_global=False)
    try:
        with telemetry.tracer_provider.get_tracer("t").start_as_current_span("call") as span:
            assert span.is_recording()
    finally:
        telemetry.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["call"]
