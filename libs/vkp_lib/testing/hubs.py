"""The hub's own processes for cross-service tests: the EPJ simulator, the registry seeded with
the sandbox (its EPJ endpoints on the simulator) and the audit service, which journaling, ingest
and lookup call; the tokens the tests call them with.

    hub = hub_fixture("pull-hub", {"VKP_JOURNALING_POLL_SECONDS": "0.05"})  # a module's `hub`
    journaling = journaling_fixture()  # journaling on the test's own database, each test
    # or, in a fixture of one's own:
    with started_hub(folder, auth_env, dev_issuer, env=JOURNALING_ENV) as hub:
        journaling = start_journaling(hub, database_url)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from vkp.registry.v1 import registry_pb2_grpc
from vkp_cli.registry import seed
from vkp_epj_sim.testing import SimulatorProcess
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import SANDBOX
from vkp_lib.testing.processes import ServiceProcess, stop_all

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


class Tokens:
    """The callers a test plays, with tokens of the test run's development issuer."""

    issuer: DevelopmentIssuer

    def bearer(self, token: str) -> Metadata:
        return bearer(token)

    @property
    def service(self) -> Metadata:
        """A hub service (ingest)."""
        return bearer(self.issuer.service_token("ingest"))

    @property
    def admin(self) -> Metadata:
        return bearer(self.issuer.vendor_token("ops", [Scopes.ADMIN]))

    def reader(self, municipality: str) -> Metadata:
        """An auditor of that municipality: scope vkp:audit.read."""
        token = self.issuer.vendor_token(
            "auditor", [Scopes.AUDIT_READ], organization_number=municipality
        )
        return bearer(token)

    def epj_of(self, organization_number: str) -> Metadata:
        """An EPJ of that municipality: scope vkp:epj, its organisation number."""
        token = self.issuer.vendor_token(
            f"epj-{organization_number}", [Scopes.EPJ], organization_number=organization_number
        )
        return bearer(token)


@dataclass
class Hub(Tokens):
    """The simulator, the seeded registry and audit; `env` is a process's environment that
    calls them (the test run's auth, the extra settings, the registry's and audit's targets)."""

    epj: SimulatorProcess
    registry: ServiceProcess
    audit: ServiceProcess
    issuer: DevelopmentIssuer
    env: dict[str, str]


def seed_registry(registry: ServiceProcess, issuer: DevelopmentIssuer, simulator_url: str) -> None:
    """The sandbox into the registry, its EPJ endpoints on the simulator."""

    async def seeding() -> None:
        async with grpc.aio.insecure_channel(registry.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            admin = bearer(issuer.vendor_token("ops", [Scopes.ADMIN]))
            await seed(stub, admin, SANDBOX, simulator_url=simulator_url)

    asyncio.run(seeding())


@contextmanager
def started_hub(
    folder: Path,
    auth_env: Mapping[str, str],
    issuer: DevelopmentIssuer,
    *,
    database: Callable[[str], str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Hub]:
    """The simulator (its data in `folder`/epj), the registry seeded with the sandbox and audit,
    each on `database(name)` (default: a SQLite file of that name in `folder`); stopped after."""

    def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{folder / f'{name}.db'}"

    url = database or sqlite
    epj = SimulatorProcess(folder / "epj")
    registry = ServiceProcess("registry", {**auth_env, "VKP_DB_URL": url("registry")})
    audit = ServiceProcess("audit", {**auth_env, "VKP_DB_URL": url("audit")})
    try:
        epj.wait_ready()
        registry.wait_serving()
        audit.wait_serving()
        seed_registry(registry, issuer, epj.url)
        calls = {
            **auth_env,
            **(env or {}),
            "VKP_REGISTRY_TARGET": registry.address,
            "VKP_AUDIT_TARGET": audit.address,
        }
        yield Hub(epj, registry, audit, issuer, calls)
    finally:
        stop_all(registry, audit)
        epj.stop()


def journaling_process(hub: Hub, database_url: str, **env: str) -> ServiceProcess:
    """Journaling on that database, calling the hub's registry and audit (started, not waited
    for)."""
    return ServiceProcess("journaling", {**hub.env, "VKP_DB_URL": database_url, **env})


def start_journaling(hub: Hub, database_url: str, **env: str) -> ServiceProcess:
    """`journaling_process`, serving."""
    process = journaling_process(hub, database_url, **env)
    process.wait_serving()
    return process


@contextmanager
def running_journaling(hub: Hub, database_url: str) -> Iterator[ServiceProcess]:
    """Journaling on that database, serving; stopped after."""
    process = journaling_process(hub, database_url)
    try:
        process.wait_serving()
        yield process
    finally:
        stop_all(process)


def hub_fixture(folder: str, env: Mapping[str, str] | None = None) -> Any:
    """A test module's `hub` fixture: `started_hub` once for the module, in a new folder of that
    name, a process that calls it given those settings too."""

    @pytest.fixture(scope="module", name="hub")
    def fixture(
        tmp_path_factory: pytest.TempPathFactory,
        auth_env: dict[str, str],
        dev_issuer: DevelopmentIssuer,
    ) -> Iterator[Hub]:
        with started_hub(tmp_path_factory.mktemp(folder), auth_env, dev_issuer, env=env) as hub:
            yield hub

    return fixture


def journaling_fixture() -> Any:
    """A test module's `journaling` fixture: journaling on a database of the test's own (SQLite,
    then PostgreSQL), calling the module's `hub`."""

    @pytest.fixture(name="journaling")
    def fixture(hub: Hub, database_url: str) -> Iterator[ServiceProcess]:
        with running_journaling(hub, database_url) as process:
            yield process

    return fixture


@asynccontextmanager
async def simulator_client(simulator: SimulatorProcess) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the EPJ simulator, whose state (notes, faults) is reset before and
    after."""
    async with httpx.AsyncClient(base_url=simulator.url, timeout=10) as client:
        await client.post("/_control/reset")
        yield client
        await client.post("/_control/reset")
