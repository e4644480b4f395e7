"""The whole hub as real processes on free ports, on SQLite or on a PostgreSQL database of the
run's own: the EPJ simulator, the five services (registry, audit, journaling, lookup, ingest)
with the registry seeded from the sandbox, and beside them a second ingest, `ingest_alone`,
with a database of its own and no journaling to relay to, for the rows that measure ingest's own
work without a delivery pipeline sharing the two cores (as the issue's figures were taken).

Services run as deployed: their default settings (but journaling's alarm settle window, 1 s),
INFO logs off (WARNING), no telemetry export.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import redis

from vkp.registry.v1 import registry_pb2_grpc
from vkp_epj_sim import SeedPatient, sandbox_patients, select_patients
from vkp_epj_sim.testing import SimulatorProcess
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import BJORKEDAL, FJORDVIK, HOME_FOLLOW_UP, SANDBOX, SandboxMunicipality
from vkp_lib.testing.processes import NOWHERE, ServiceProcess

SQLITE, POSTGRESQL = "SQLite", "PostgreSQL"
#: The five services, in the order they start (a service needs the addresses of those before).
SERVICES = ("registry", "audit", "journaling", "lookup", "ingest")
#: The vendor system the bench's events come from: home measurements (one Observation a note).
VENDOR = HOME_FOLLOW_UP
#: The hub's alarm settle window (VKP_JOURNALING_ALARM_SETTLE_SECONDS; 30 s by default): short,
#: so the alarm row waits one second, not thirty, after each closing step.
ALARM_SETTLE_SECONDS = 1.0
#: Lookup's cache (VKP_REDIS_URL), as in production; BENCH_REDIS_URL says where, if not here.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Push municipalities: the hub delivers their notes to the simulator.
BUSY, OTHER = FJORDVIK, BJORKEDAL


def patients(municipality: SandboxMunicipality) -> list[SeedPatient]:
    """The simulator's sandbox patients of a municipality: the bench's events are theirs."""
    return select_patients(sandbox_patients(), municipality=municipality.municipality_number)


@dataclass
class Hub:
    database: str
    folder: Path
    issuer: DevelopmentIssuer
    sim: SimulatorProcess
    processes: dict[str, ServiceProcess]
    ingest_alone: ServiceProcess
    #: Lookup's cache: this Redis, under a key prefix of this hub's own (deleted after).
    redis_url: str = ""
    redis_prefix: str = ""

    def address(self, service: str) -> str:
        return self.processes[service].address

    def vendor_metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.issuer.vendor_token(VENDOR.client_ids[0], [Scopes.INGEST])
        return (("authorization", f"Bearer {token}"),)

    def service_metadata(self, service: str = "ingest") -> tuple[tuple[str, str], ...]:
        """A hub service's token (journaling's Enqueue takes only that), valid for minutes."""
        return (("authorization", f"Bearer {self.issuer.service_token(service)}"),)

    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.issuer.vendor_token("bench-admin", [Scopes.ADMIN])
        return (("authorization", f"Bearer {token}"),)

    def epj(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.sim.url, timeout=60)


def _base_env(issuer: DevelopmentIssuer) -> dict[str, str]:
    return {
        **issuer.env(),
        "VKP_LOG_LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    }


async def _seed(registry: str, issuer: DevelopmentIssuer, simulator_url: str) -> None:
    # Imported when needed (with the CLI, half a CPU second), not before the bench's first row.
    from vkp_cli.registry import seed

    admin = issuer.vendor_token("bench-admin", [Scopes.ADMIN])
    async with grpc.aio.insecure_channel(registry) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        metadata = (("authorization", f"Bearer {admin}"),)
        await seed(stub, metadata, SANDBOX, simulator_url=simulator_url)


@contextlib.contextmanager
def database_urls(database: str, folder: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The hub's VKP_DB_URL per service and the lone ingest's: SQLite files in `folder`, or two
    PostgreSQL databases of this run (the hub's services share one, as they may), dropped after."""
    if database == SQLITE:
        urls = {name: f"sqlite+aiosqlite:///{folder / f'{name}.db'}" for name in SERVICES}
        yield urls, f"sqlite+aiosqlite:///{folder / 'ingest-alone.db'}"
        return
    # Imported when needed: the test plugin brings pytest and the CLI (a CPU second).
    from vkp_lib.testing.plugin import postgres_database

    with postgres_database() as shared, postgres_database() as alone:
        yield dict.fromkeys(SERVICES, shared), alone


def _forget_redis(url: str, prefix: str) -> None:
    """Deletes the hub's keys from Redis (its lookup cache's)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _kill(sim: SimulatorProcess, processes: Sequence[ServiceProcess]) -> None:
    """The hub is thrown away once measured: its processes are killed, not stopped (a graceful
    stop costs each process a second of grace and interpreter teardown, the bench's time; the
    tests prove the stop). SIGKILL to all at once, then each waited for."""
    for process in processes:
        if process.process.poll() is None:
            process.process.kill()
    for process in processes:
        process.kill()  # waits, closes its pipes and removes its data folder
    sim.kill()
    sim.stop()  # closes its pipes and log (the process has exited)


@contextlib.contextmanager
def running_hub(database: str) -> Iterator[Hub]:
    """The hub, seeded and serving; killed (and PostgreSQL's databases dropped) after.

    Each process starts as soon as the addresses it needs are known, and the registry is
    seeded while the later ones start: nothing calls ingest or delivers a note before the seed
    is in, and the registry answers CheckAccess from its own committed snapshot."""
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vkp-bench-")))
        urls, alone_url = stack.enter_context(database_urls(database, folder))
        issuer = DevelopmentIssuer.open(folder / "issuer")
        base = _base_env(issuer)
        sim = SimulatorProcess(folder / "epj", env={"VKP_LOG_LEVEL": "WARNING"})
        started: list[ServiceProcess] = []
        stack.callback(lambda: _kill(sim, started))

        def start(name: str, url: str, **env: str) -> ServiceProcess:
            process = ServiceProcess(name, {**base, "VKP_DB_URL": url, **env})
            started.append(process)
            return process

        registry, audit = start("registry", urls["registry"]), start("audit", urls["audit"])
        registry.wait_serving()
        audit.wait_serving()
        targets = {"VKP_REGISTRY_TARGET": registry.address, "VKP_AUDIT_TARGET": audit.address}
        journaling = start(
            "journaling",
            urls["journaling"],
            **targets,
            VKP_JOURNALING_ALARM_SETTLE_SECONDS=str(ALARM_SETTLE_SECONDS),
        )
        alone = start("ingest", alone_url, **targets, VKP_JOURNALING_TARGET=NOWHERE)
        sim.wait_ready()
        asyncio.run(_seed(registry.address, issuer, sim.url))
        journaling.wait_serving()
        ingest = start(
            "ingest", urls["ingest"], **targets, VKP_JOURNALING_TARGET=journaling.address
        )
        ingest.wait_serving()
        redis_prefix = f"vkp-bench-{uuid.uuid4().hex[:12]}:"
        stack.callback(_forget_redis, REDIS_URL, redis_prefix)
        lookup = start(
            "lookup",
            urls["lookup"],
            **targets,
            VKP_INGEST_TARGET=ingest.address,
            VKP_REDIS_URL=REDIS_URL,
            VKP_REDIS_KEY_PREFIX=redis_prefix,
        )
        for process in (lookup, alone):
            process.wait_serving()
        processes = dict(zip(SERVICES, (registry, audit, journaling, lookup, ingest), strict=True))
        yield Hub(database, folder, issuer, sim, processes, alone, REDIS_URL, redis_prefix)


Started = list[tuple[contextlib.AbstractContextManager[Hub], Hub]]


def start_hubs(databases: Sequence[str]) -> Started:
    """Several hubs started at once, each in a thread of its own (for the smoke run, whose
    figures mean nothing, so its time goes to the checks); `stop_hubs` stops them."""
    managers = [running_hub(database) for database in databases]
    with ThreadPoolExecutor(len(managers)) as pool:
        entering = [(manager, pool.submit(manager.__enter__)) for manager in managers]
    started: Started = []
    failures: list[BaseException] = []
    for manager, future in entering:
        try:
            started.append((manager, future.result()))
        except Exception as exc:  # the others are stopped before this is raised
            failures.append(exc)
    if failures:
        stop_hubs(started)
        raise failures[0]
    return started


def stop_hubs(started: Started) -> None:
    """Stops hubs `start_hubs` started, at once."""
    if started:
        with ThreadPoolExecutor(len(started)) as pool:
            stopping = [pool.submit(manager.__exit__, None, None, None) for manager, _ in started]
        for future in stopping:
            future.result()
