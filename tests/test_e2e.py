"""The event flow end to end, every part a real process: a vendor's event through ingest, the
outbox relay, journaling and the fhir adapter, into the municipality's EPJ (the simulator), where
a nurse finds the note; and the vendor sees it JOURNALED."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx

from vkp.common.v1 import common_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp.registry.v1 import registry_pb2_grpc
from vkp_cli.registry import seed
from vkp_epj_sim import sandbox_patients, select_patients
from vkp_epj_sim.testing import SimulatorProcess
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import DISPENSER, FJORDVIK, SANDBOX
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.processes import ServiceProcess, stop_all


async def test_a_vendors_event_becomes_a_note_in_the_epj_and_its_status_says_journaled(
    tmp_path: Path, auth_env: dict[str, str], dev_issuer: DevelopmentIssuer
) -> None:
    folder = tmp_path
    epj = SimulatorProcess(folder / "epj")

    def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{folder / f'{name}.db'}"

    registry = ServiceProcess("registry", {**auth_env, "VKP_DB_URL": sqlite("registry")})
    audit = ServiceProcess("audit", {**auth_env, "VKP_DB_URL": sqlite("audit")})
    started = [registry, audit]
    try:
        epj.wait_ready()
        registry.wait_serving()
        audit.wait_serving()
        admin = (("authorization", f"Bearer {dev_issuer.vendor_token('o', [Scopes.ADMIN])}"),)
        async with grpc.aio.insecure_channel(registry.address) as channel:
            await seed(
                registry_pb2_grpc.RegistryServiceStub(channel),
                admin,
                SANDBOX,
                simulator_url=epj.url,
            )
        env = {
            **auth_env,
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
        event = sample_event(
            "dispenser_alert",
            event_id=f"e2e-{uuid.uuid4().hex[:8]}",
            national_id=patient.national_id,
            at=datetime.now(UTC),
        )
        event.municipality = FJORDVIK.organization_number
        token = dev_issuer.vendor_token(DISPENSER.client_ids[0], [Scopes.INGEST])
        vendor = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(ingest.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            receipt = (
                await stub.SubmitEvent(pb.SubmitEventRequest(event=event), metadata=vendor)
            ).receipt
            assert receipt.state == common_pb2.EVENT_STATE_REGISTERED
            for _ in range(200):
                status = (
                    await stub.GetEventStatus(
                        pb.GetEventStatusRequest(event_id=event.event_id), metadata=vendor
                    )
                ).status
                if status.state == common_pb2.EVENT_STATE_JOURNALED:
                    break
                await asyncio.sleep(0.1)
        assert status.state == common_pb2.EVENT_STATE_JOURNALED
        async with httpx.AsyncClient(base_url=epj.url) as client:
            page = (await client.get("/")).text
        assert "Medisin ikke utlevert til planlagt tid" in page
        assert patient.national_id not in page
    finally:
        stop_all(*started)
        epj.stop()
