"""How the runner starts the journaling service: its settings, its dependencies (built and closed
in one lifespan), the servicer and the background tasks that deliver notes and relay their audit
records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import grpc

from vkp.journaling.v1 import journaling_pb2, journaling_pb2_grpc
from vkp_journaling.alarms import AlarmCutter
from vkp_journaling.dead_letters import DeadLetters
from vkp_journaling.delivery import Delivery
from vkp_journaling.domain.alarm import AlarmWindows
from vkp_journaling.epj import FhirAdapter
from vkp_journaling.journaled import JournaledNotes
from vkp_journaling.permissions import PERMISSIONS
from vkp_journaling.render import note_key
from vkp_journaling.service import JournalingService, PullService
from vkp_journaling.servicer import JournalingServicer
from vkp_journaling.settings import JournalingSettings
from vkp_journaling.store import JournalStore
from vkp_lib.audit_client import AuditClient
from vkp_lib.audit_relay import AuditRelay
from vkp_lib.clients import insecure_channel
from vkp_lib.db import Database
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.fhir import EndpointDirectory
from vkp_lib.identity.setup import build_authentication, service_token_source
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = journaling_pb2.DESCRIPTOR.services_by_name["JournalingService"].full_name

#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (DatabaseSettings, JournalingSettings)
#: Audit records sent together, at most; and how often the relay looks for records owed when no
#: delivery here wakes it (records left by a crash, or by another replica's stopped relay).
AUDIT_BATCH = 200
AUDIT_IDLE_SECONDS = 5.0


@dataclass(frozen=True)
class Dependencies:
    db: Database
    service: JournalingService
    delivery: Delivery
    audit_relay: AuditRelay
    pulls: PullService
    alarms: AlarmCutter


def _alarm_windows(settings: JournalingSettings) -> AlarmWindows:
    return AlarmWindows(
        settle=timedelta(seconds=settings.alarm_settle_seconds),
        timeout=timedelta(seconds=settings.alarm_timeout_seconds),
    )


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    journaling: JournalingSettings,
) -> Service[Dependencies]:
    authentication = build_authentication(PERMISSIONS, auth, settings)
    tokens = service_token_source(auth, "journaling")

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[Dependencies]:
        # Made here, on start: gRPC channels and HTTP clients belong to the running event loop.
        async with AsyncExitStack() as stack:
            db = Database.from_url(database.url_for("journaling"), name="journaling")
            await db.start()
            stack.push_async_callback(db.close)
            store = JournalStore(db, alarm_windows=_alarm_windows(journaling))
            if database.migrate_on_start:
                await store.migrate()
            registry = insecure_channel(
                settings.registry_target, "vkp.registry.v1.RegistryService", tokens
            )
            stack.push_async_callback(registry.close)
            audit = insecure_channel(settings.audit_target, "vkp.audit.v1.AuditService", tokens)
            stack.push_async_callback(audit.close)
            adapter = FhirAdapter()
            stack.push_async_callback(adapter.close)
            endpoints = EndpointDirectory(registry, secrets_dir=journaling.epj_secrets_dir)
            # An entry queued here wakes the workers; a note delivered wakes the audit relay.
            # Alarm steps stored here wake the cut of alarm segments into handling logs.
            service = JournalingService(
                store,
                on_queued=lambda entries: delivery.notify(entries),
                on_alarm_steps=lambda: alarms.notify(),
            )
            audit_relay = AuditRelay(
                service.audit_owed,
                service.audit_sent,
                AuditClient(audit),
                batch=AUDIT_BATCH,
                idle_seconds=AUDIT_IDLE_SECONDS,
            )
            # One alert per dead letter, one count per journaled note, pushed or pulled.
            dead_letters, journaled = DeadLetters(), JournaledNotes()
            delivery = Delivery(
                store,
                endpoints,
                adapter,
                journaling,
                on_journaled=audit_relay.wake.set,
                dead_letters=dead_letters,
                journaled=journaled,
            )
            # A handling log queued wakes the delivery.
            alarms = AlarmCutter(
                store, poll_seconds=journaling.poll_seconds, on_cut=delivery.notify
            )
            pulls = PullService(
                store,
                endpoints,
                delivery.note_of,
                read_timeout=timedelta(seconds=journaling.pull_read_timeout_seconds),
                note_identifier=lambda entry_id: note_key(entry_id, 1),
                on_journaled=audit_relay.wake.set,
                dead_letters=dead_letters,
                journaled=journaled,
            )
            yield Dependencies(
                db=db,
                service=service,
                delivery=delivery,
                audit_relay=audit_relay,
                pulls=pulls,
                alarms=alarms,
            )

    def register(server: grpc.aio.Server, deps: Dependencies) -> None:
        journaling_pb2_grpc.add_JournalingServiceServicer_to_server(
            JournalingServicer(deps.service, deps.pulls), server
        )

    return Service(
        name="journaling",
        full_name=FULL_NAME,
        lifespan=lifespan,
        register=register,
        tasks=lambda deps: [deps.delivery.run, deps.audit_relay.run, deps.alarms.run],
        readiness=lambda deps: [deps.db.ready],
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
