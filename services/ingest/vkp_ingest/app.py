"""How the runner starts the ingest service."""

from __future__ import annotations

import grpc

from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp_ingest.access import ACCESS
from vkp_ingest.servicer import IngestServicer
from vkp_lib.identity.setup import build_authentication
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


def build_service(settings: RuntimeSettings, auth: AuthSettings) -> Service:
    def register(server: grpc.aio.Server) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(), server)

    authentication = build_authentication(ACCESS, auth, settings)
    return Service(
        name="ingest",
        full_name=FULL_NAME,
        register=register,
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
