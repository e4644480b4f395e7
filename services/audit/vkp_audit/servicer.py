"""gRPC servicer of vkp.audit.v1.AuditService: thin, proto <-> domain."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC

from vkp.audit.v1 import audit_pb2 as pb
from vkp.audit.v1 import audit_pb2_grpc
from vkp_audit import convert
from vkp_audit.fhir import audit_bundle
from vkp_audit.log import AuditLog
from vkp_lib.auth import current_principal
from vkp_lib.errors import PermissionDenied
from vkp_lib.rpc import Context

FHIR_JSON = "application/fhir+json; fhirVersion=4.0"


def _own_municipality(municipality: str) -> None:
    """Audit readers see their own municipality's records only."""
    if current_principal().organization_number != municipality:
        raise PermissionDenied(
            "WRONG_MUNICIPALITY", "an audit reader may read only their own municipality's log"
        )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def Record(self, request: pb.RecordRequest, context: Context) -> pb.RecordResponse:
        placed = await self.log.record([convert.record_from_pb(r) for r in request.records])
        return pb.RecordResponse(
            results=[
                pb.RecordResult(record_id=p.record_id, created=p.created, sequence=p.sequence)
                for p in placed
            ]
        )

    async def Query(self, request: pb.QueryRequest, context: Context) -> pb.QueryResponse:
        _own_municipality(request.municipality)
        page = await self.log.store.query(
            request.municipality,
            national_id=request.patient.value,
            client_id=request.actor_client_id,
            since=request.time_range.start_time.ToDatetime(tzinfo=UTC)
            if request.time_range.HasField("start_time")
            else None,
            until=request.time_range.end_time.ToDatetime(tzinfo=UTC)
            if request.time_range.HasField("end_time")
            else None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.QueryResponse(
            records=[convert.record_to_pb(r) for r in page.records],
            next_page_token=page.next_page_token,
        )

    async def VerifyChain(
        self, request: pb.VerifyChainRequest, context: Context
    ) -> pb.VerifyChainResponse:
        _own_municipality(request.municipality)
        result = await self.log.verify(
            request.municipality, request.from_sequence, request.to_sequence
        )
        return convert.verification_to_pb(result)

    async def ExportFhir(
        self, request: pb.ExportFhirRequest, context: Context
    ) -> pb.ExportFhirResponse:
        _own_municipality(request.municipality)
        page = await self.log.store.query(
            request.municipality,
            national_id=request.patient.value,
            since=request.time_range.start_time.ToDatetime(tzinfo=UTC)
            if request.time_range.HasField("start_time")
            else None,
            until=request.time_range.end_time.ToDatetime(tzinfo=UTC)
            if request.time_range.HasField("end_time")
            else None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        records = page.records
        if request.patient.value:
            # A patient's access log names that patient only, not the others a record named.
            wanted = request.patient.value
            records = [
                replace(r, patients=tuple(p for p in r.patients if p.national_id == wanted))
                for r in records
            ]
        return pb.ExportFhirResponse(
            fhir_bundle=audit_bundle(records),
            content_type=FHIR_JSON,
            next_page_token=page.next_page_token,
        )

    async def CreateCheckpoint(
        self, request: pb.CreateCheckpointRequest, context: Context
    ) -> pb.CreateCheckpointResponse:
        checkpoint = await self.log.checkpoint(request.municipality)
        return pb.CreateCheckpointResponse(checkpoint=convert.checkpoint_to_pb(checkpoint))
