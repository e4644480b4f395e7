"""The event flow end to end, every part a real process: a vendor's event through ingest, the
outbox relay, journaling and the fhir adapter, into the municipality's EPJ (the simulator), where
a nurse finds the note; and the vendor sees it JOURNALED. The processes send their spans to the
test's collector: the note's delivery is in the trace of the vendor's SubmitEvent call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vkp.common.v1 import common_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp.registry.v1 import registry_pb2_grpc
from vkp_cli.registry import seed
from vkp_epj_sim import sandbox_patients, select_patients
from vkp_epj_sim.testing import SimulatorProcess
from vkp_journaling.delivery import SPAN_NAME as DELIVERY_SPAN
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import DISPENSER, FJORDVIK, SANDBOX
from vkp_lib.testing.collector import CollectedSpan, Collector
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.processes import ServiceProcess, stop_all

SUBMIT_EVENT = "/vkp.ingest.v1.IngestService/SubmitEvent"


@dataclass(frozen=True)
class Flow:
    """One vendor's event, sent through the hub, and what came of it."""

    receipt_state: common_pb2.EventState.ValueType
    final_state: common_pb2.EventState.ValueType
    national_id: str
    epj_page: str
    #: The vendor's span around its SubmitEvent call, and the call's client span.
    vendor_span: trace.SpanContext
    client_span: trace.SpanContext


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory,
    auth_env: dict[str, str],
    collector_env: dict[str, str],
    dev_issuer: DevelopmentIssuer,
    span_exporter: InMemorySpanExporter,
) -> Iterator[Flow]:
    folder = tmp_path_factory.mktemp("e2e")
    epj = SimulatorProcess(folder / "epj")

    def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{folder / f'{name}.db'}"

    traced = {**auth_env, **collector_env}
    registry = ServiceProcess("registry", {**traced, "VKP_DB_URL": sqlite("registry")})
    audit = ServiceProcess("audit", {**traced, "VKP_DB_URL": sqlite("audit")})
    started = [registry, audit]
    try:
        epj.wait_ready()
        registry.wait_serving()
        audit.wait_serving()
        env = {
            **traced,
            "VKP_REGISTRY_TARGET": registry.address,
            "VKP_AUDIT_TARGET": audit.address,
            "VKP_JOURNALING_POLL_SECONDS": "0.05",
        }
        journaling = ServiceProcess("journaling", {**env, "VKP_DB_URL": sqlite("journaling")})
        started.append(journaling)
        journaling.wait_serving()
        ingest = ServiceProcess(
            "ingest",
            {**env, "VKP_DB_URL": sqlite("ingest"), "VKP_JOURNALING_TARGET": journaling.address},
        )
        started.append(ingest)
        ingest.wait_serving()
        patient = select_patients(sandbox_patients(), municipality="4699", active="27")[0]

        async def send() -> Flow:
            admin = (("authorization", f"Bearer {dev_issuer.vendor_token('o', [Scopes.ADMIN])}"),)
            async with grpc.aio.insecure_channel(registry.address) as channel:
                await seed(
                    registry_pb2_grpc.RegistryServiceStub(channel),
                    admin,
                    SANDBOX,
                    simulator_url=epj.url,
                )
            event = sample_event(
                "dispenser_alert",
                event_id=f"e2e-{uuid.uuid4().hex[:8]}",
                national_id=patient.national_id,
                at=datetime.now(UTC),
            )
            event.municipality = FJORDVIK.organization_number
            token = dev_issuer.vendor_token(DISPENSER.client_ids[0], [Scopes.INGEST])
            vendor = (("authorization", f"Bearer {token}"),)
            # The vendor's backend, traced: its call carries the trace context to ingest.
            with trace.get_tracer("vendor-backend").start_as_current_span("vendor sends") as span:
                async with grpc.aio.insecure_channel(
                    ingest.address, interceptors=aio_client_interceptors()
                ) as channel:
                    stub = ingest_pb2_grpc.IngestServiceStub(channel)
                    request = pb.SubmitEventRequest(event=event)
                    receipt = (await stub.SubmitEvent(request, metadata=vendor)).receipt
            vendor_span = span.get_span_context()
            client_span = next(
                s.context
                for s in span_exporter.get_finished_spans()
                if s.kind is trace.SpanKind.CLIENT and s.context.trace_id == vendor_span.trace_id
            )
            async with grpc.aio.insecure_channel(ingest.address) as channel:
                stub = ingest_pb2_grpc.IngestServiceStub(channel)
                for _ in range(200):
                    status = (
                        await stub.GetEventStatus(
                            pb.GetEventStatusRequest(event_id=event.event_id), metadata=vendor
                        )
                    ).status
                    if status.state == common_pb2.EVENT_STATE_JOURNALED:
                        break
                    await asyncio.sleep(0.1)
            async with httpx.AsyncClient(base_url=epj.url) as client:
                page = (await client.get("/")).text
            return Flow(
                receipt.state, status.state, patient.national_id, page, vendor_span, client_span
            )

        yield asyncio.run(send())
    finally:
        stop_all(*started)
        epj.stop()


def test_a_vendors_event_becomes_a_note_in_the_epj_and_its_status_says_journaled(
    flow: Flow,
) -> None:
    assert flow.receipt_state == common_pb2.EVENT_STATE_REGISTERED
    assert flow.final_state == common_pb2.EVENT_STATE_JOURNALED
    assert "Medisin ikke utlevert til planlagt tid" in flow.epj_page
    assert flow.national_id not in flow.epj_page


def test_the_notes_delivery_and_its_epj_call_are_in_the_trace_of_the_vendors_submit_event(
    flow: Flow, otel_collector: Collector
) -> None:
    trace_id = format(flow.vendor_span.trace_id, "032x")

    def in_trace(service: str, name: str = "") -> list[CollectedSpan]:
        return otel_collector.wait_for(
            lambda s: (
                s.trace_id == trace_id
                and s.service == service
                and (not name or s.span.name == name)
            )
        )

    (submit,) = in_trace("vkp-ingest", SUBMIT_EVENT)
    assert submit.parent_span_id == format(flow.client_span.span_id, "016x")
    (delivery,) = in_trace("vkp-journaling", DELIVERY_SPAN)
    # Under the vendor's call: its parent is a span ingest made while taking the event.
    assert delivery.parent_span_id in {s.span_id for s in in_trace("vkp-ingest")}
    # The EPJ call (the httpx instrumentation's span) is under the delivery, with the database's.
    under = [s for s in in_trace("vkp-journaling") if s.parent_span_id == delivery.span_id]
    (epj_call,) = [s for s in under if s.span.name == "POST"]
    assert epj_call.span.kind == epj_call.span.SPAN_KIND_CLIENT
