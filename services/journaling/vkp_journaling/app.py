"""How the runner starts the journaling service."""

from __future__ import annotations

import grpc

from vkp.journaling.v1 import journaling_pb2, journaling_pb2_grpc
from vkp_journaling.access import ACCESS
from vkp_journaling.servicer import JournalingServicer
from vkp_lib.identity.setup import build_authentication
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = journaling_pb2.DESCRIPTOR.services_by_name["JournalingService"].full_name


def build_service(settings: RuntimeSettings, auth: AuthSettings) -> Service:
    def register(server: grpc.aio.Server) -> None:
        journaling_pb2_grpc.add_JournalingServiceServicer_to_server(JournalingServicer(), server)

    authentication = build_authentication(ACCESS, auth, settings)
    return Service(
        name="journaling",
        full_name=FULL_NAME,
        register=register,
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
