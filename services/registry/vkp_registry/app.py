"""How the runner starts the registry service."""

from __future__ import annotations

import grpc

from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_lib.db import Database
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.identity.setup import build_authentication
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_registry.feed import Feed
from vkp_registry.permissions import PERMISSIONS
from vkp_registry.servicer import RegistryServicer
from vkp_registry.settings import RegistrySettings
from vkp_registry.store import RegistryStore

FULL_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (DatabaseSettings, RegistrySettings)


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    registry: RegistrySettings,
) -> Service:
    db = Database.from_url(database.url_for("registry"), name="registry")
    store = RegistryStore(db)
    feed = Feed(store, poll_seconds=registry.poll_seconds)

    async def open_store() -> None:
        await db.start()
        if database.migrate_on_start:
            await store.migrate()
        await feed.load()

    async def reachable() -> bool:
        await store.head_revision()
        return True

    def register(server: grpc.aio.Server) -> None:
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            RegistryServicer(store, feed), server
        )

    authentication = build_authentication(PERMISSIONS, auth, settings)
    return Service(
        name="registry",
        full_name=FULL_NAME,
        register=register,
        tasks=[feed.run],
        readiness=[reachable],
        authenticator=authentication.authenticator,
        on_start=[*authentication.on_start, open_store],
        on_close=[*authentication.on_close, db.close],
    )
