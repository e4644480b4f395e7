"""How the runner starts the registry service: its settings, its dependencies (built and closed
in one lifespan), the servicer over the use cases and the background task that follows the
change table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc

from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_lib.db import Database
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.identity.setup import build_authentication
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_registry.feed import Feed
from vkp_registry.permissions import PERMISSIONS
from vkp_registry.service import RegistryService
from vkp_registry.servicer import RegistryServicer
from vkp_registry.settings import RegistrySettings
from vkp_registry.store import RegistryStore

FULL_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name

#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (DatabaseSettings, RegistrySettings)


@dataclass(frozen=True)
class Dependencies:
    store: RegistryStore
    feed: Feed
    service: RegistryService


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    registry: RegistrySettings,
) -> Service[Dependencies]:
    authentication = build_authentication(PERMISSIONS, auth, settings)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[Dependencies]:
        db = Database.from_url(database.url_for("registry"), name="registry")
        await db.start()
        try:
            store = RegistryStore(db)
            if database.migrate_on_start:
                await store.migrate()
            feed = Feed(store, poll_seconds=registry.poll_seconds)
            await feed.load()
            yield Dependencies(store, feed, RegistryService(store, feed))
        finally:
            await db.close()

    def register(server: grpc.aio.Server, deps: Dependencies) -> None:
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            RegistryServicer(deps.service), server
        )

    return Service(
        name="registry",
        full_name=FULL_NAME,
        lifespan=lifespan,
        register=register,
        tasks=lambda deps: [deps.feed.run],
        readiness=lambda deps: [deps.store.db.ready],
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
