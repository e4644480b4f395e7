"""Each of the five services as a real `vkp serve` process: health, reflection, the request size
limit, UNIMPLEMENTED placeholders, graceful shutdown and trace propagation."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import SERVICES
from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp_lib.health import LIVENESS
from vkp_lib.status import error_info
from vkp_lib.testing.collector import CollectedSpan, Collector
from vkp_lib.testing.processes import TEST_ENV, ServiceProcess

FIRST_RPC = {
    "registry": "/vkp.registry.v1.RegistryService/GetMunicipality",
    "ingest": "/vkp.ingest.v1.IngestService/SubmitEvent",
    "journaling": "/vkp.journaling.v1.JournalingService/GetEntry",
    "lookup": "/vkp.lookup.v1.LookupService/GetPatient",
    "audit": "/vkp.audit.v1.AuditService/Query",
}


def full_name(name: str) -> str:
    return f"vkp.{name}.v1.{name.capitalize()}Service"


def raw_call(channel: grpc.Channel, method: str, payload: bytes) -> bytes:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
    result: bytes = call(payload, timeout=10)
    return result


@pytest.mark.parametrize("name", SERVICES)
def test_readiness_liveness_and_service_health_are_serving(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    with hub[name].channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", LIVENESS, full_name(name)):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service


@pytest.mark.parametrize("name", SERVICES)
def test_reflection_lists_the_service_under_its_final_name(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    with hub[name].channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in response.list_services_response.service}
        assert full_name(name) in names
        assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize("name", SERVICES)
def test_two_megabyte_request_is_refused_with_resource_exhausted(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    with hub[name].channel() as channel, pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, FIRST_RPC[name], b"\x0a" + b"\xff" * (2 * 1024 * 1024))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("name", SERVICES)
def test_rpcs_not_built_yet_answer_unimplemented_with_a_reason(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    with hub[name].channel() as channel, pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, FIRST_RPC[name], b"")
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    info = error_info(caught.value)
    assert info is not None
    assert (info.reason, info.domain) == ("NOT_IMPLEMENTED", f"{name}.vkp")


@pytest.mark.parametrize("name", SERVICES)
def test_sigterm_turns_health_not_serving_then_exits_zero_within_the_grace(name: str) -> None:
    process = ServiceProcess(name)
    try:
        process.wait_serving()
        seen: list[int] = []
        watching = threading.Event()

        def watch() -> None:
            with process.channel() as channel:
                stream = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(service=""), timeout=15
                )
                for response in stream:
                    seen.append(response.status)
                    watching.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert watching.wait(10)
        began = time.monotonic()
        code = process.terminate()
        elapsed = time.monotonic() - began
        watcher.join(10)
    finally:
        process.kill()
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert seen == [serving, not_serving]
    assert code == 0
    drain, grace = (
        float(TEST_ENV[k]) for k in ("VKP_SHUTDOWN_DRAIN_SECONDS", "VKP_SHUTDOWN_GRACE_SECONDS")
    )
    assert elapsed < drain + grace


async def test_client_trace_continues_in_the_server(
    hub: dict[str, ServiceProcess], otel_collector: Collector, span_exporter: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("vendor-backend")
    with tracer.start_as_current_span("vendor submits an event") as parent:
        address = hub["ingest"].address
        async with grpc.aio.insecure_channel(
            address, interceptors=aio_client_interceptors()
        ) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await ingest_pb2_grpc.IngestServiceStub(channel).SubmitEvent(
                    ingest_pb2.SubmitEventRequest(event_id="e-1"), timeout=5
                )
    trace_id = format(parent.get_span_context().trace_id, "032x")
    client_span = next(
        s
        for s in span_exporter.get_finished_spans()
        if s.kind is trace.SpanKind.CLIENT
        and s.context.trace_id == parent.get_span_context().trace_id
    )

    def is_server_span(s: CollectedSpan) -> bool:
        return s.trace_id == trace_id and s.service == "vkp-ingest"

    (server_span,) = otel_collector.wait_for(is_server_span)
    assert server_span.span.name == "/vkp.ingest.v1.IngestService/SubmitEvent"
    assert server_span.parent_span_id == format(client_span.context.span_id, "016x")


def test_invalid_settings_stop_the_service_before_it_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vkp_cli", "serve", "audit", "--port", "0"],
        env={"VKP_SHUTDOWN_GRACE_SECONDS": "-1", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "VKP_SHUTDOWN_GRACE_SECONDS" in result.stderr
    assert result.stdout == ""
