"""How the runner starts the registry service."""

from __future__ import annotations

import grpc

from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_lib.identity.setup import build_authentication
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_registry.access import ACCESS
from vkp_registry.servicer import RegistryServicer

FULL_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


def build_service(settings: RuntimeSettings, auth: AuthSettings) -> Service:
    def register(server: grpc.aio.Server) -> None:
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(), server)

    authentication = build_authentication(ACCESS, auth, settings)
    return Service(
        name="registry",
        full_name=FULL_NAME,
        register=register,
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
