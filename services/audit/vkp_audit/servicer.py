"""gRPC servicer of vkp.audit.v1.AuditService: thin, proto <-> domain.

RPCs whose step has not come yet raise NotImplementedError, which the runner answers with
UNIMPLEMENTED and the reason NOT_IMPLEMENTED.
"""

from __future__ import annotations

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp_lib.rpc import Context


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    async def Query(
        self, request: audit_pb2.QueryRequest, context: Context
    ) -> audit_pb2.QueryResponse:
        raise NotImplementedError
