"""How the runner starts the lookup service: its settings, its dependencies (built in one
lifespan; the EPJ reader, the cache and the clients of registry, ingest and audit join them in
step 12) and the servicer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc

from vkp.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from vkp_lib.identity.setup import build_authentication
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_lookup.permissions import PERMISSIONS
from vkp_lookup.service import LookupService
from vkp_lookup.servicer import LookupServicer
from vkp_lookup.settings import LookupSettings

FULL_NAME = lookup_pb2.DESCRIPTOR.services_by_name["LookupService"].full_name

#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (LookupSettings,)


@dataclass(frozen=True)
class Dependencies:
    service: LookupService


def build_service(
    settings: RuntimeSettings, auth: AuthSettings, lookup: LookupSettings
) -> Service[Dependencies]:
    authentication = build_authentication(PERMISSIONS, auth, settings)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[Dependencies]:
        yield Dependencies(LookupService(lookup))

    def register(server: grpc.aio.Server, deps: Dependencies) -> None:
        lookup_pb2_grpc.add_LookupServiceServicer_to_server(LookupServicer(deps.service), server)

    return Service(
        name="lookup",
        full_name=FULL_NAME,
        lifespan=lifespan,
        register=register,
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
