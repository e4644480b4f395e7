"""How the runner starts the lookup service."""

from __future__ import annotations

import grpc

from vkp.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from vkp_lib.runner import Service
from vkp_lib.settings import RuntimeSettings
from vkp_lookup.servicer import LookupServicer

FULL_NAME = lookup_pb2.DESCRIPTOR.services_by_name["LookupService"].full_name


def build_service(settings: RuntimeSettings) -> Service:
    def register(server: grpc.aio.Server) -> None:
        lookup_pb2_grpc.add_LookupServiceServicer_to_server(LookupServicer(), server)

    return Service(name="lookup", full_name=FULL_NAME, register=register)
