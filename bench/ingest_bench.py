"""Ingest, durable, auth on: SubmitEvent at 16 in flight, and SubmitEvents of 500 back to back,
into a real ingest process on SQLite (the registry seeded with the sandbox and the audit service
beside it; journaling not started), against the no-op RPC of the runner benchmark in the same
run."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc

from vkp.common.v1 import event_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp.registry.v1 import registry_pb2_grpc
from vkp_cli.registry import seed
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import FJORDVIK, HOME_FOLLOW_UP, SANDBOX
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.plugin import postgres_database
from vkp_lib.testing.processes import NOWHERE, ServiceProcess

Figures = tuple[float, float, float]


def _event(i: int) -> event_pb2.Event:
    event = sample_event(
        "home_measurement",
        event_id=f"bench-{uuid.uuid4().hex}",
        national_id=TEST_PEOPLE[i % 8].national_id,
        at=datetime.now(UTC),
    )
    event.municipality = FJORDVIK.organization_number
    return event


async def _unary(address: str, token: str, seconds: float, concurrency: int) -> Figures:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for i in range(50):  # warm up (and the registry's decision cached)
            await stub.SubmitEvent(pb.SubmitEventRequest(event=_event(i)), metadata=metadata)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def caller(n: int) -> None:
            i = n
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                await stub.SubmitEvent(pb.SubmitEventRequest(event=_event(i)), metadata=metadata)
                latencies.append(time.perf_counter() - began)
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(caller(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000


async def _batches(address: str, token: str, seconds: float) -> Figures:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        latencies: list[float] = []
        events = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds or not latencies:
            request = pb.SubmitEventsRequest(events=[_event(i) for i in range(500)])
            start = time.perf_counter()
            await stub.SubmitEvents(request, metadata=metadata)
            latencies.append(time.perf_counter() - start)
            events += 500
        elapsed = time.perf_counter() - began
    return events / elapsed, statistics.median(latencies) * 1000, max(latencies) * 1000


def measure_ingest(
    seconds: float, concurrency: int, backend: str = "sqlite"
) -> tuple[Figures, Figures]:
    """(unary req/s, p50 ms, p99 ms) and (batch events/s, median ms, max ms per batch), with
    ingest's database on SQLite or on a PostgreSQL database of its own."""
    if backend == "postgresql":
        with postgres_database() as url:
            return _measure(seconds, concurrency, url)
    return _measure(seconds, concurrency, None)


def _measure(seconds: float, concurrency: int, ingest_url: str | None) -> tuple[Figures, Figures]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        issuer = DevelopmentIssuer.open(root / "issuer")
        base = {**issuer.env(), "VKP_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}

        def db(name: str) -> dict[str, str]:
            return {**base, "VKP_DB_URL": f"sqlite+aiosqlite:///{root / f'{name}.db'}"}

        registry, audit = (
            ServiceProcess("registry", db("registry")),
            ServiceProcess("audit", db("audit")),
        )
        started = [registry, audit]
        try:
            registry.wait_serving()
            audit.wait_serving()
            admin = issuer.vendor_token("bench", [Scopes.ADMIN])

            async def seeded() -> None:
                async with grpc.aio.insecure_channel(registry.address) as channel:
                    stub = registry_pb2_grpc.RegistryServiceStub(channel)
                    await seed(
                        stub,
                        (("authorization", f"Bearer {admin}"),),
                        SANDBOX,
                        simulator_url=f"http://{NOWHERE}",
                    )

            asyncio.run(seeded())
            # Journaling is not started: its relay waits (with backoff), so this measures ingest's
            # own work, not a delivery pipeline sharing the same two cores.
            targets = {
                "VKP_REGISTRY_TARGET": registry.address,
                "VKP_AUDIT_TARGET": audit.address,
                "VKP_JOURNALING_TARGET": NOWHERE,
            }
            ingest_db = {"VKP_DB_URL": ingest_url} if ingest_url else {}
            ingest = ServiceProcess("ingest", {**db("ingest"), **targets, **ingest_db})
            started.append(ingest)
            ingest.wait_serving()
            token = issuer.vendor_token(HOME_FOLLOW_UP.client_ids[0], [Scopes.INGEST])
            unary = asyncio.run(_unary(ingest.address, token, seconds, concurrency))
            batches = asyncio.run(_batches(ingest.address, token, seconds))
            return unary, batches
        finally:
            for process in started:
                process.send_sigterm()
            for process in started:
                process.terminate()
