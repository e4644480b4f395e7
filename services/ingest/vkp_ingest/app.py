"""How the runner starts the ingest service."""

from __future__ import annotations

import grpc

from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp_ingest.servicer import IngestServicer
from vkp_lib.runner import Service
from vkp_lib.settings import RuntimeSettings

FULL_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


def build_service(settings: RuntimeSettings) -> Service:
    def register(server: grpc.aio.Server) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(), server)

    return Service(name="ingest", full_name=FULL_NAME, register=register)
