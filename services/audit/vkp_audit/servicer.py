"""gRPC servicer of vkp.audit.v1.AuditService: thin, proto <-> domain.

The service serves its whole contract. An RPC whose step has not come yet raises
NotImplementedError, which the runner answers UNIMPLEMENTED with the reason NOT_IMPLEMENTED,
after the request has passed authentication and the field rules of the contract.
"""

from __future__ import annotations

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp_lib.rpc import Context


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    async def Record(
        self, request: audit_pb2.RecordRequest, context: Context
    ) -> audit_pb2.RecordResponse:
        raise NotImplementedError

    async def Query(
        self, request: audit_pb2.QueryRequest, context: Context
    ) -> audit_pb2.QueryResponse:
        raise NotImplementedError

    async def VerifyChain(
        self, request: audit_pb2.VerifyChainRequest, context: Context
    ) -> audit_pb2.VerifyChainResponse:
        raise NotImplementedError

    async def ExportFhir(
        self, request: audit_pb2.ExportFhirRequest, context: Context
    ) -> audit_pb2.ExportFhirResponse:
        raise NotImplementedError

    async def CreateCheckpoint(
        self, request: audit_pb2.CreateCheckpointRequest, context: Context
    ) -> audit_pb2.CreateCheckpointResponse:
        raise NotImplementedError
