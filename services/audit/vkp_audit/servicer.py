"""gRPC servicer of vkp.audit.v1.AuditService: the request converted, the use case called (with
the caller's principal where it decides access), the answer converted; nothing else."""

from __future__ import annotations

from vkp.audit.v1 import audit_pb2 as pb
from vkp.audit.v1 import audit_pb2_grpc
from vkp_audit import convert
from vkp_audit.service import AuditService
from vkp_lib.auth import current_principal
from vkp_lib.rpc import Context


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, service: AuditService) -> None:
        self.service = service

    async def Record(self, request: pb.RecordRequest, context: Context) -> pb.RecordResponse:
        placed = await self.service.record([convert.record_from_pb(r) for r in request.records])
        return convert.record_response(placed)

    async def Query(self, request: pb.QueryRequest, context: Context) -> pb.QueryResponse:
        page = await self.service.query(current_principal(), convert.query_from_pb(request))
        return convert.query_response(page)

    async def VerifyChain(
        self, request: pb.VerifyChainRequest, context: Context
    ) -> pb.VerifyChainResponse:
        result = await self.service.verify_chain(
            current_principal(), request.municipality, request.from_sequence, request.to_sequence
        )
        return convert.verification_to_pb(result)

    async def ExportFhir(
        self, request: pb.ExportFhirRequest, context: Context
    ) -> pb.ExportFhirResponse:
        export = await self.service.export_fhir(
            current_principal(), convert.export_query_from_pb(request)
        )
        return convert.export_response(export)

    async def CreateCheckpoint(
        self, request: pb.CreateCheckpointRequest, context: Context
    ) -> pb.CreateCheckpointResponse:
        checkpoint = await self.service.create_checkpoint(request.municipality)
        return pb.CreateCheckpointResponse(checkpoint=convert.checkpoint_to_pb(checkpoint))
