"""gRPC servicer of vkp.audit.v1.AuditService: thin, proto <-> domain.

Every RPC still answers UNIMPLEMENTED (the generated base class) until its step fills it in.
"""

from __future__ import annotations

from vkp.audit.v1 import audit_pb2_grpc


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    pass
