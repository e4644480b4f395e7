"""How the runner starts the ingest service: its settings, its dependencies (built and closed in
one lifespan), the servicer, and the background tasks: the group commit of registrations, the
registry's change feed, and the relays to journaling and to the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_ingest.domain.checks import EventRules
from vkp_ingest.domain.model import Registered, Registration
from vkp_ingest.domain.reasons import Reason
from vkp_ingest.permissions import PERMISSIONS
from vkp_ingest.relay import JournalingRelay, audit_relay
from vkp_ingest.service import IngestService
from vkp_ingest.servicer import IngestServicer
from vkp_ingest.settings import IngestSettings
from vkp_ingest.store import IngestStore
from vkp_lib.audit_client import AuditClient
from vkp_lib.audit_relay import AuditRelay
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


@dataclass(frozen=True)
class Dependencies:
    store: IngestStore
    #: One registration at a time; requests that arrive while it commits go together in the next.
    registrar: GroupCommit[Registration, list[Registered]]
    decisions: DecisionClient
    audit: AuditClient
    journaling: journaling_pb2_grpc.JournalingServiceAsyncStub
    relay: JournalingRelay
    audit_relay: AuditRelay


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    ingest: IngestSettings,
) -> Service[Dependencies]:
    authentication = build_authentication(PERMISSIONS, auth, settings)
    tokens = service_token_source(auth, "ingest")
    rules = EventRules(
        allow_synthetic=(
            ingest.allow_synthetic_ids
            if ingest.allow_synthetic_ids is not None
            else settings.development
        ),
        future_skew=timedelta(seconds=ingest.future_skew_seconds),
        max_age=timedelta(seconds=ingest.max_age_seconds),
    )

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[Dependencies]:
        db = Database.from_url(database.url_for("ingest"), name="ingest")
        await db.start()
        channels: list[grpc.aio.Channel] = []
        try:
            store = IngestStore(db)
            if database.migrate_on_start:
                await store.migrate()
            # Made here: gRPC channels belong to the running event loop.
            for target, service in (
                (settings.registry_target, "vkp.registry.v1.RegistryService"),
                (settings.audit_target, "vkp.audit.v1.AuditService"),
                (settings.journaling_target, "vkp.journaling.v1.JournalingService"),
            ):
                channels.append(insecure_channel(target, service, tokens))
            registry, audit, journaling = channels
            audit_client = AuditClient(audit)
            journaling_stub = journaling_pb2_grpc.JournalingServiceStub(journaling)
            relay = JournalingRelay(store, journaling_stub, ingest)
            audits = audit_relay(store, audit_client)

            async def register(requests: list[Registration]) -> list[list[Registered]]:
                registered = await store.register_many(requests, datetime.now(UTC))
                if any(r.new for results in registered for r in results):
                    relay.wake.set()  # the relays wait for work: it is here
                    audits.wake.set()
                return registered

            registrar: GroupCommit[Registration, list[Registered]] = GroupCommit(
                register,
                size=lambda request: len(request.events),
                max_size=2000,
                stopping_reason=Reason.INGEST_STOPPING,
            )
            yield Dependencies(
                store=store,
                registrar=registrar,
                decisions=DecisionClient(registry),
                audit=audit_client,
                journaling=journaling_stub,
                relay=relay,
                audit_relay=audits,
            )
        finally:
            for channel in channels:
                await channel.close()
            await db.close()

    def register(server: grpc.aio.Server, deps: Dependencies) -> None:
        service = IngestService(
            registrar=deps.registrar,
            events=deps.store,
            alarms=deps.store,
            decisions=deps.decisions,
            audit=deps.audit,
            journaling=deps.journaling,
            rules=rules,
        )
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(service), server)

    return Service(
        name="ingest",
        full_name=FULL_NAME,
        lifespan=lifespan,
        register=register,
        tasks=lambda deps: [
            deps.registrar.run,
            deps.decisions.run,
            deps.relay.run,
            deps.audit_relay.run,
        ],
        readiness=lambda deps: [deps.store.db.ready],
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
