"""How the runner starts the journaling service."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from vkp.journaling.v1 import journaling_pb2, journaling_pb2_grpc
from vkp_journaling.endpoints import EndpointDirectory
from vkp_journaling.epj import FhirAdapter
from vkp_journaling.permissions import PERMISSIONS
from vkp_journaling.servicer import JournalingServicer
from vkp_journaling.settings import JournalingSettings
from vkp_journaling.store import JournalStore
from vkp_journaling.worker import AuditRelay, Delivery
from vkp_lib.audit_client import AuditClient
from vkp_lib.clients import insecure_channel
from vkp_lib.db import Database
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.identity.setup import build_authentication, service_token_source
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = journaling_pb2.DESCRIPTOR.services_by_name["JournalingService"].full_name


#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (DatabaseSettings, JournalingSettings)


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    journaling: JournalingSettings,
) -> Service[None]:
    authentication = build_authentication(PERMISSIONS, auth, settings)
    db = Database.from_url(database.url_for("journaling"), name="journaling")
    store = JournalStore(db)
    tokens = service_token_source(auth, "journaling")
    # Made on start: gRPC channels and HTTP clients belong to the running event loop.
    started: dict[str, Any] = {}

    async def open_store() -> None:
        await db.start()
        if database.migrate_on_start:
            await store.migrate()
        registry = insecure_channel(
            settings.registry_target, "vkp.registry.v1.RegistryService", tokens
        )
        audit = insecure_channel(settings.audit_target, "vkp.audit.v1.AuditService", tokens)
        adapter = FhirAdapter()
        endpoints = EndpointDirectory(registry, secrets_dir=journaling.epj_secrets_dir)
        started.update(
            registry=registry,
            audit=audit,
            adapter=adapter,
            delivery=Delivery(store, endpoints, adapter, journaling),
            relay=AuditRelay(store, AuditClient(audit)),
        )

    async def deliver(stopping: asyncio.Event) -> None:
        await started["delivery"].run(stopping)

    async def record(stopping: asyncio.Event) -> None:
        await started["relay"].run(stopping)

    async def close_clients() -> None:
        if started:
            await started["adapter"].close()
            await started["registry"].close()
            await started["audit"].close()

    def register(server: grpc.aio.Server) -> None:
        journaling_pb2_grpc.add_JournalingServiceServicer_to_server(
            JournalingServicer(store), server
        )

    return Service(
        name="journaling",
        full_name=FULL_NAME,
        register=lambda server, _: register(server),
        tasks=lambda _: [deliver, record],
        readiness=lambda _: [db.ready],
        authenticator=authentication.authenticator,
        on_start=[*authentication.on_start, open_store],
        on_close=[*authentication.on_close, close_clients, db.close],
    )
