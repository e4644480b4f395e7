"""Errors and warnings are for what an operator must act on: a normal run logs none. Connections
recycled by their maximum age, reflection clients and subscribers that leave their streams early,
deliveries to EPJ endpoints: all normal, so all quiet. The services are real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from vkp.common.v1 import common_pb2
from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_cli.registry import seed
from vkp_epj_sim import sandbox_patients, select_patients
from vkp_epj_sim.testing import SimulatorProcess
from vkp_lib.clients import insecure_channel
from vkp_lib.fhir import EndpointDirectory
from vkp_lib.identity.issuer import DevelopmentIssuer, ServiceTokenSource, load_private_key
from vkp_lib.identity.permissions import Scopes
from vkp_lib.registry_client import DecisionClient
from vkp_lib.sandbox import BJORKEDAL, DISPENSER, FJORDVIK, NORDHEIM, SANDBOX
from vkp_lib.streams import WRITE_FAILURE_NOTICE_SECONDS
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.processes import ServiceProcess, stop_all

Metadata = tuple[tuple[str, str], ...]
REGISTRY = "vkp.registry.v1.RegistryService"
#: Connections live about a second and their streams half a second more, so a run of a few
#: seconds sees every client's connections recycled several times.
RECYCLING = {"VKP_MAX_CONNECTION_AGE_SECONDS": "1", "VKP_SHUTDOWN_GRACE_SECONDS": "0.5"}
LOUD = frozenset({"warning", "error", "critical", "exception"})


def records(log: str) -> list[dict[str, Any]]:
    """The JSON records of a process's log."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def loud_lines(log: str) -> list[str]:
    """The lines of a process's log an operator would be called for: records at warning level
    and above, and anything that is not a JSON record (a traceback a library printed itself, a
    message of gRPC's C core)."""
    loud = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            loud.append(line)
            continue
        if not isinstance(record, dict) or record.get("level") in LOUD:
            loud.append(line)
    return loud


def count(log: str, event: str) -> int:
    return sum(record.get("event") == event for record in records(log))


def logged(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    """The events `logger` logged in this process at `level` or above."""
    return [
        str(r.msg.get("event")) if isinstance(r.msg, dict) else r.getMessage()
        for r in caplog.records
        if r.name == logger and r.levelno >= level
    ]


def admin_of(issuer: DevelopmentIssuer) -> Metadata:
    return (("authorization", f"Bearer {issuer.vendor_token('ops', [Scopes.ADMIN])}"),)


def service_of(issuer: DevelopmentIssuer, name: str = "ingest") -> Metadata:
    return (("authorization", f"Bearer {issuer.service_token(name)}"),)


# -- clients that leave early ----------------------------------------------------------------


def reflect_everything(address: str) -> list[str]:
    """What a tool like grpcurl does: list the services and fetch each one's descriptors, one
    reflection stream per question."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(database)
        services = list(database.get_services())
        for name in services:
            pool.FindServiceByName(name)
        return services


#: A client that takes its answers slowly: a small receive window, so the server waits to send.
SLOW_READER = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]


async def leave_a_reflection_stream(address: str, request_id: str) -> None:
    """A reflection client that asks many questions, reads one answer and cancels the stream
    while the server is still sending the others."""
    async with grpc.aio.insecure_channel(address, options=SLOW_READER) as channel:
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            metadata=(("x-request-id", request_id),)
        )
        question = reflection_pb2.ServerReflectionRequest(file_containing_symbol=REGISTRY)
        for _ in range(50):
            await call.write(question)
        assert isinstance(await call.read(), reflection_pb2.ServerReflectionResponse)
        await asyncio.sleep(0.2)
        call.cancel()


async def leave_a_change_feed(
    address: str, service: Metadata, request_id: str, after_revision: int = 0
) -> None:
    """A WatchChanges subscriber that goes away before reading: with a backlog larger than it
    takes in, while the server is still sending it."""
    async with grpc.aio.insecure_channel(address, options=SLOW_READER) as channel:
        stream = registry_pb2_grpc.RegistryServiceStub(channel).WatchChanges(
            pb.WatchChangesRequest(after_revision=after_revision),
            metadata=(*service, ("x-request-id", request_id)),
        )
        await asyncio.sleep(0.5)
        stream.cancel()


async def make_a_large_backlog(address: str, admin: Metadata) -> int:
    """Changes the sandbox's partner profiles, each time to the largest one allowed, until the
    change feed holds megabytes; the revision before the first change."""
    codes = [c for c in common_pb2.ServiceCode.values() if c]
    name = f"municipalities/{FJORDVIK.organization_number}/partnerProfile"
    first = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for n in range(80):
            mappings = [
                pb.ServiceTypeMapping(
                    service_code=code,
                    service_type_patterns=[f"{n}-{code}-{i}-".ljust(64, "x") for i in range(50)],
                )
                for code in codes
            ]
            profile = pb.PartnerProfile(name=name, mappings=mappings)
            changed = await stub.UpdatePartnerProfile(
                pb.UpdatePartnerProfileRequest(partner_profile=profile), metadata=admin
            )
            first = first or changed.partner_profile.revision
    return first - 1


async def name_the_secret(
    registry: ServiceProcess, issuer: DevelopmentIssuer, municipality: str, secret: str
) -> None:
    """The municipality's EPJ endpoint names `secret` from now on (the sandbox's name none)."""
    name = f"municipalities/{municipality}/epjEndpoint"
    endpoint = pb.EpjEndpoint(name=name, credentials_secret=secret)
    update = pb.UpdateEpjEndpointRequest(epj_endpoint=endpoint)
    update.update_mask.paths.append("credentials_secret")
    async with grpc.aio.insecure_channel(registry.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await stub.UpdateEpjEndpoint(update, metadata=admin_of(issuer))


async def call_ended(process: ServiceProcess, request_id: str) -> None:
    """Waits for the line a server logs when the call `request_id` has ended (a cancelled call
    is logged at INFO), and a moment more for anything logged after it."""
    for _ in range(100):
        if any(
            r.get("event") == "rpc" and r.get("request_id") == request_id
            for r in records(process.logs())
        ):
            await asyncio.sleep(WRITE_FAILURE_NOTICE_SECONDS + 0.5)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{process.name} logged no end of the call {request_id}")


# -- the focused cases, on one registry (sandbox seeded, connections recycled) -----------------


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory,
    auth_env: dict[str, str],
    dev_issuer: DevelopmentIssuer,
) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("quiet-registry")
    process = ServiceProcess(
        "registry",
        {**auth_env, **RECYCLING, "VKP_DB_URL": f"sqlite+aiosqlite:///{folder / 'registry.db'}"},
    )
    try:
        process.wait_serving()

        async def seed_registry() -> None:
            async with grpc.aio.insecure_channel(process.address) as channel:
                stub = registry_pb2_grpc.RegistryServiceStub(channel)
                # Only stored: no EPJ is called in these tests.
                await seed(stub, admin_of(dev_issuer), SANDBOX, simulator_url="http://epj.invalid")

        asyncio.run(seed_registry())
        yield process
    finally:
        stop_all(process)


def registry_channel(
    registry: ServiceProcess, issuer: DevelopmentIssuer, service: str
) -> grpc.aio.Channel:
    """A channel to the registry as the hub's `service` would open it."""
    tokens = ServiceTokenSource(load_private_key(issuer.service_key_file), service)
    return insecure_channel(registry.address, REGISTRY, tokens)


async def test_a_reflection_client_that_cancels_while_answers_are_being_sent_leaves_no_error(
    registry: ServiceProcess,
) -> None:
    before = len(registry.logs())
    request_id = f"reflect-{uuid.uuid4().hex}"
    await leave_a_reflection_stream(registry.address, request_id)
    await call_ended(registry, request_id)
    assert loud_lines(registry.logs()[before:]) == []


async def test_a_change_feed_subscriber_that_leaves_while_its_backlog_is_sent_leaves_no_error(
    registry: ServiceProcess, dev_issuer: DevelopmentIssuer
) -> None:
    after = await make_a_large_backlog(registry.address, admin_of(dev_issuer))
    before = len(registry.logs())
    request_id = f"watch-{uuid.uuid4().hex}"
    await leave_a_change_feed(registry.address, service_of(dev_issuer), request_id, after)
    await call_ended(registry, request_id)
    assert loud_lines(registry.logs()[before:]) == []


async def test_a_change_feed_recycled_by_the_connection_age_reconnects_without_a_warning(
    registry: ServiceProcess, dev_issuer: DevelopmentIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    stopping = asyncio.Event()
    async with registry_channel(registry, dev_issuer, "ingest") as channel:
        client = DecisionClient(channel, heartbeat_seconds=0.5)
        follower = asyncio.create_task(client.run(stopping))
        try:
            for _ in range(200):
                reconnected = logged(caplog, "vkp.registry.client", logging.DEBUG)
                if reconnected.count("registry change feed reconnected") >= 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            stopping.set()
            await follower
    events = logged(caplog, "vkp.registry.client", logging.DEBUG)
    assert events.count("registry change feed reconnected") >= 3, events
    assert logged(caplog, "vkp.registry.client", logging.WARNING) == []
    assert events.count("registry change feed up") == 1


@pytest.fixture
def lone_registry(auth_env: dict[str, str], tmp_path: Path) -> Iterator[ServiceProcess]:
    """A registry of its own, for a test that stops it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    process = ServiceProcess("registry", {**auth_env, "VKP_DB_URL": url})
    try:
        process.wait_serving()
        yield process
    finally:
        stop_all(process)


async def test_a_change_feed_that_cannot_be_reestablished_is_warned_about_once(
    lone_registry: ServiceProcess, dev_issuer: DevelopmentIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    stopping = asyncio.Event()
    async with registry_channel(lone_registry, dev_issuer, "ingest") as channel:
        client = DecisionClient(channel, heartbeat_seconds=0.2, warn_after_seconds=0.5)
        follower = asyncio.create_task(client.run(stopping))
        try:
            for _ in range(100):
                if "registry change feed up" in logged(caplog, "vkp.registry.client", logging.INFO):
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(stop_all, lone_registry)
            for _ in range(100):
                if logged(caplog, "vkp.registry.client", logging.WARNING):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)  # several more failed attempts
        finally:
            stopping.set()
            await follower
    warnings = logged(caplog, "vkp.registry.client", logging.WARNING)
    assert warnings == ["registry change feed down"]


async def test_an_endpoint_that_names_no_secret_is_used_without_credentials_or_a_warning(
    registry: ServiceProcess,
    dev_issuer: DevelopmentIssuer,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    await name_the_secret(registry, dev_issuer, FJORDVIK.organization_number, "")
    async with registry_channel(registry, dev_issuer, "journaling") as channel:
        endpoints = EndpointDirectory(channel, secrets_dir=tmp_path, ttl_seconds=0)
        for _ in range(5):
            endpoint = await endpoints.get(FJORDVIK.organization_number)
            assert endpoint is not None
            assert endpoint.authorization == ""
    assert logged(caplog, "vkp.fhir", logging.WARNING) == []


async def test_a_missing_secret_is_warned_about_once_per_endpoint_not_at_every_look_up(
    registry: ServiceProcess,
    dev_issuer: DevelopmentIssuer,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for place in (BJORKEDAL, NORDHEIM):
        monkeypatch.delenv(f"VKP_EPJ_SECRET_EPJ_{place.municipality_number}", raising=False)
        secret = f"epj-{place.municipality_number}"
        await name_the_secret(registry, dev_issuer, place.organization_number, secret)
    async with registry_channel(registry, dev_issuer, "journaling") as channel:
        endpoints = EndpointDirectory(channel, secrets_dir=tmp_path, ttl_seconds=0)
        for _ in range(5):
            for place in (BJORKEDAL, NORDHEIM):
                endpoint = await endpoints.get(place.organization_number)
                assert endpoint is not None
                assert endpoint.authorization == ""
    warnings = logged(caplog, "vkp.fhir", logging.WARNING)
    assert warnings == ["EPJ credentials not found"] * 2


async def test_a_secret_that_is_found_is_sent_as_a_bearer_token_without_a_warning(
    registry: ServiceProcess,
    dev_issuer: DevelopmentIssuer,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(f"VKP_EPJ_SECRET_EPJ_{BJORKEDAL.municipality_number}", raising=False)
    token = f"token-{uuid.uuid4().hex}"
    await name_the_secret(registry, dev_issuer, BJORKEDAL.organization_number, "epj-3499")
    (tmp_path / "epj-3499").write_text(f"{token}\n")
    async with registry_channel(registry, dev_issuer, "journaling") as channel:
        endpoints = EndpointDirectory(channel, secrets_dir=tmp_path, ttl_seconds=0)
        endpoint = await endpoints.get(BJORKEDAL.organization_number)
    assert endpoint is not None
    assert endpoint.authorization == f"Bearer {token}"
    assert logged(caplog, "vkp.fhir", logging.WARNING) == []


# -- the whole hub ----------------------------------------------------------------------------


async def journal_events(ingest: ServiceProcess, issuer: DevelopmentIssuer, number: int) -> None:
    """A vendor's events for sandbox patients of Fjordvik, each followed until JOURNALED."""
    patients = select_patients(sandbox_patients(), municipality="4699", active="27")[:number]
    token = issuer.vendor_token(DISPENSER.client_ids[0], [Scopes.INGEST])
    vendor = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(ingest.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        ids = []
        for patient in patients:
            event = sample_event(
                "dispenser_alert",
                event_id=f"quiet-{uuid.uuid4().hex[:8]}",
                national_id=patient.national_id,
                at=datetime.now(UTC),
            )
            event.municipality = FJORDVIK.organization_number
            await stub.SubmitEvent(ingest_pb2.SubmitEventRequest(event=event), metadata=vendor)
            ids.append(event.event_id)
        for event_id in ids:
            request = ingest_pb2.GetEventStatusRequest(event_id=event_id)
            for _ in range(200):
                status = (await stub.GetEventStatus(request, metadata=vendor)).status
                if status.state == common_pb2.EVENT_STATE_JOURNALED:
                    break
                await asyncio.sleep(0.1)
            assert status.state == common_pb2.EVENT_STATE_JOURNALED


async def test_a_normal_run_of_the_hub_logs_no_error_and_no_warning(
    tmp_path: Path, auth_env: dict[str, str], dev_issuer: DevelopmentIssuer
) -> None:
    epj = SimulatorProcess(tmp_path / "epj")

    def env(name: str, **more: str) -> dict[str, str]:
        database = f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}"
        return {**auth_env, **RECYCLING, "VKP_DB_URL": database, **more}

    registry = ServiceProcess("registry", env("registry"))
    audit = ServiceProcess("audit", env("audit"))
    callers: list[ServiceProcess] = []
    try:
        epj.wait_ready()
        registry.wait_serving()
        audit.wait_serving()
        admin = admin_of(dev_issuer)
        async with grpc.aio.insecure_channel(registry.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            await seed(stub, admin, SANDBOX, simulator_url=epj.url)
        callees = {"VKP_REGISTRY_TARGET": registry.address, "VKP_AUDIT_TARGET": audit.address}
        journaling = ServiceProcess(
            "journaling", env("journaling", **callees, VKP_JOURNALING_POLL_SECONDS="0.05")
        )
        callers.append(journaling)
        journaling.wait_serving()
        ingest = ServiceProcess(
            "ingest", env("ingest", **callees, VKP_JOURNALING_TARGET=journaling.address)
        )
        callers.append(ingest)
        ingest.wait_serving()
        started = time.monotonic()

        await journal_events(ingest, dev_issuer, 3)
        # Tools and subscribers that leave their streams early.
        for process in (registry, audit, journaling, ingest):
            services = await asyncio.to_thread(reflect_everything, process.address)
            assert any(process.name in name for name in services), services
            await leave_a_reflection_stream(process.address, f"reflect-{uuid.uuid4().hex}")
        for _ in range(3):
            request_id = f"watch-{uuid.uuid4().hex}"
            await leave_a_change_feed(registry.address, service_of(dev_issuer), request_id)
        # Long enough for ingest's change feed to outlive several of its connections.
        await asyncio.sleep(max(0.0, started + 8 - time.monotonic()))
    finally:
        # The callers first, so none of them sees its callee go away.
        codes = stop_all(*callers) + stop_all(registry, audit)
        epj.stop()
    assert all(code == 0 for code in codes), codes
    loud = {p.name: loud_lines(p.logs()) for p in (registry, audit, journaling, ingest)}
    assert loud == {p: [] for p in loud}, json.dumps(loud, indent=1)
    assert count(ingest.logs(), "registry change feed reconnected") >= 3
