"""How the runner starts the ingest service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc

from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_ingest.permissions import PERMISSIONS
from vkp_ingest.relay import AuditRelay, Relay
from vkp_ingest.servicer import IngestServicer
from vkp_ingest.settings import IngestSettings
from vkp_ingest.store import IngestStore, Registered, Request
from vkp_lib.audit_client import AuditClient
from vkp_lib.clients import insecure_channel
from vkp_lib.db import Database
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.grouping import GroupCommit
from vkp_lib.identity.setup import build_authentication, service_token_source
from vkp_lib.registry_client import DecisionClient
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (DatabaseSettings, IngestSettings)


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    ingest: IngestSettings,
) -> Service[None]:
    authentication = build_authentication(PERMISSIONS, auth, settings)
    db = Database.from_url(database.url_for("ingest"), name="ingest")
    store = IngestStore(db)
    # One registration at a time; requests that arrive while it commits go together in the next.
    registrar: GroupCommit[Request, list[Registered]] = GroupCommit(
        lambda requests: store.register_many(requests, datetime.now(UTC)),
        size=lambda request: len(request[0]),
        max_size=2000,
        stopping_reason="INGEST_STOPPING",
    )
    tokens = service_token_source(auth, "ingest")
    # Made on start: gRPC channels belong to the running event loop.
    started: dict[str, Any] = {}

    async def open_store() -> None:
        await db.start()
        if database.migrate_on_start:
            await store.migrate()
        registry = insecure_channel(
            settings.registry_target, "vkp.registry.v1.RegistryService", tokens
        )
        audit = insecure_channel(settings.audit_target, "vkp.audit.v1.AuditService", tokens)
        journaling = insecure_channel(
            settings.journaling_target, "vkp.journaling.v1.JournalingService", tokens
        )
        audit_client = AuditClient(audit)
        started.update(
            channels=[registry, audit, journaling],
            access=DecisionClient(registry),
            audit=audit_client,
            journaling=journaling_pb2_grpc.JournalingServiceStub(journaling),
            relay=Relay(store, journaling, ingest),
            audit_relay=AuditRelay(store, audit_client),
        )

    async def follow_registry(stopping: asyncio.Event) -> None:
        await started["access"].run(stopping)

    async def relay(stopping: asyncio.Event) -> None:
        await started["relay"].run(stopping)

    async def audit_relay(stopping: asyncio.Event) -> None:
        await started["audit_relay"].run(stopping)

    async def close_channels() -> None:
        for channel in started.get("channels", []):
            await channel.close()

    allow_synthetic = (
        ingest.allow_synthetic_ids
        if ingest.allow_synthetic_ids is not None
        else settings.development
    )

    def register(server: grpc.aio.Server) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(
            IngestServicer(
                store,
                lambda: registrar,
                lambda: started["access"],
                lambda: started["audit"],
                lambda: started["journaling"],
                ingest,
                allow_synthetic=allow_synthetic,
            ),
            server,
        )

    return Service(
        name="ingest",
        full_name=FULL_NAME,
        register=lambda server, _: register(server),
        tasks=lambda _: [registrar.run, follow_registry, relay, audit_relay],
        readiness=lambda _: [db.ready],
        authenticator=authentication.authenticator,
        on_start=[*authentication.on_start, open_store],
        on_close=[*authentication.on_close, close_channels, db.close],
    )
