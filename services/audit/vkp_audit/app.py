"""How the runner starts the audit service."""

from __future__ import annotations

import grpc

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp_audit.access import ACCESS
from vkp_audit.servicer import AuditServicer
from vkp_lib.identity.setup import build_authentication
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name


def build_service(settings: RuntimeSettings, auth: AuthSettings) -> Service:
    def register(server: grpc.aio.Server) -> None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(), server)

    authentication = build_authentication(ACCESS, auth, settings)
    return Service(
        name="audit",
        full_name=FULL_NAME,
        register=register,
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
