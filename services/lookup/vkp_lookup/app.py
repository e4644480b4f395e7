"""How the runner starts the lookup service: its settings, its dependencies (built and closed in
one lifespan: the EPJ reader over the shared FHIR client and the cache, the registry's decisions
and EPJ endpoints, ingest's open-alarm query, the audit client), the servicer, and the
background task that follows the registry's change feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc

from vkp.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from vkp_lib.audit_client import AuditClient
from vkp_lib.cache import CacheSettings, open_cache
from vkp_lib.clients import insecure_channel
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.fhir import EndpointDirectory, FhirClient
from vkp_lib.identity.setup import build_authentication, service_token_source
from vkp_lib.registry_client import DecisionClient
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_lookup.alarms import AlarmClient
from vkp_lookup.permissions import PERMISSIONS
from vkp_lookup.service import LookupService
from vkp_lookup.servicer import LookupServicer
from vkp_lookup.settings import LookupSettings
from vkp_lookup.store import PatientRecords, cache_ttls

FULL_NAME = lookup_pb2.DESCRIPTOR.services_by_name["LookupService"].full_name

#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
#: (Lookup keeps no database: of DatabaseSettings it uses the data folder, where development
#: mode keeps the cache's keys.)
SETTINGS = (DatabaseSettings, LookupSettings, CacheSettings)


@dataclass(frozen=True)
class Dependencies:
    service: LookupService
    decisions: DecisionClient


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    lookup: LookupSettings,
    cache_settings: CacheSettings,
) -> Service[Dependencies]:
    authentication = build_authentication(PERMISSIONS, auth, settings)
    tokens = service_token_source(auth, "lookup")
    allow_synthetic = (
        lookup.allow_synthetic_ids
        if lookup.allow_synthetic_ids is not None
        else settings.development
    )

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[Dependencies]:
        channels: list[grpc.aio.Channel] = []
        # Made here: gRPC channels and the HTTP session belong to the running event loop.
        fhir = FhirClient(name="vkp.lookup.epj")
        cache = open_cache(
            settings,
            cache_settings,
            ttls=cache_ttls(lookup.cache_ttl_seconds, lookup.cache_service_ttl_seconds),
            folder=database.data_dir,
        )
        try:
            for target, name in (
                (settings.registry_target, "vkp.registry.v1.RegistryService"),
                (settings.audit_target, "vkp.audit.v1.AuditService"),
                (settings.ingest_target, "vkp.ingest.v1.IngestService"),
            ):
                channels.append(insecure_channel(target, name, tokens))
            registry, audit, ingest = channels
            decisions = DecisionClient(
                registry, stale_after_seconds=lookup.registry_stale_after_seconds
            )
            records = PatientRecords(
                fhir,
                EndpointDirectory(
                    registry,
                    secrets_dir=lookup.epj_secrets_dir,
                    ttl_seconds=lookup.endpoint_ttl_seconds,
                ),
                deadline_seconds=lookup.epj_deadline_seconds,
                cache=cache,
            )
            service = LookupService(
                lookup,
                records=records,
                decisions=decisions,
                alarms=AlarmClient(ingest),
                audit=AuditClient(audit),
                allow_synthetic=allow_synthetic,
            )
            yield Dependencies(service=service, decisions=decisions)
        finally:
            for channel in channels:
                await channel.close()
            await fhir.close()
            await cache.close()

    def register(server: grpc.aio.Server, deps: Dependencies) -> None:
        lookup_pb2_grpc.add_LookupServiceServicer_to_server(LookupServicer(deps.service), server)

    return Service(
        name="lookup",
        full_name=FULL_NAME,
        lifespan=lifespan,
        register=register,
        tasks=lambda deps: [deps.decisions.run],
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
