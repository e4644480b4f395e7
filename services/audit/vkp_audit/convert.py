"""Between the audit contract (vkp.audit.v1) and the audit domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from vkp.audit.v1 import audit_pb2 as pb
from vkp.common.v1 import common_pb2
from vkp_audit.domain.chain import Verification
from vkp_audit.domain.model import (
    Actor,
    Appended,
    AuditAction,
    AuditOutcome,
    AuditRecord,
    Checkpoint,
    FhirExport,
    Page,
    Patient,
    RecordQuery,
)
from vkp_audit.fhir import MEDIA_TYPE
from vkp_lib.national_id import kind_of_type, type_name_of
from vkp_lib.timestamps import timestamp

ACTIONS = {
    pb.AUDIT_ACTION_READ: AuditAction.READ,
    pb.AUDIT_ACTION_QUERY: AuditAction.QUERY,
    pb.AUDIT_ACTION_CREATE: AuditAction.CREATE,
}
ACTION_PB = {v: k for k, v in ACTIONS.items()}
OUTCOMES = {
    pb.AUDIT_OUTCOME_ALLOWED: AuditOutcome.ALLOWED,
    pb.AUDIT_OUTCOME_DENIED: AuditOutcome.DENIED,
    pb.AUDIT_OUTCOME_FAILED: AuditOutcome.FAILED,
}
OUTCOME_PB = {v: k for k, v in OUTCOMES.items()}
SERVICE_CODE_NAMES = {
    value: name.removeprefix("SERVICE_CODE_")
    for name, value in common_pb2.ServiceCode.items()
    if value != common_pb2.SERVICE_CODE_UNSPECIFIED
}
SERVICE_CODE_PB = {v: k for k, v in SERVICE_CODE_NAMES.items()}


def record_from_pb(r: pb.AuditRecord) -> AuditRecord:
    return AuditRecord(
        record_id=r.record_id.lower(),
        actor=Actor(
            r.actor.client_id, r.actor.organization_number, r.actor.vendor_system, r.actor.person_id
        ),
        municipality=r.municipality,
        patients=tuple(
            Patient(p.value, kind_of_type(common_pb2.NationalIdType.Name(p.type)))
            for p in r.patients
        ),
        action=ACTIONS[r.action],
        resource=r.resource,
        outcome=OUTCOMES[r.outcome],
        occurred_time=r.occurred_time.ToDatetime(tzinfo=UTC),
        service_code=SERVICE_CODE_NAMES.get(r.purpose.service_code, ""),
        alarm_id=r.purpose.alarm_id,
        outcome_reason=r.outcome_reason,
        stale_data=r.stale_data,
        request_id=r.request_id,
        trace_id=r.trace_id,
        access_basis=r.access_basis,
    )


def record_to_pb(r: AuditRecord) -> pb.AuditRecord:
    return pb.AuditRecord(
        record_id=r.record_id,
        actor=pb.Actor(
            client_id=r.actor.client_id,
            organization_number=r.actor.organization_number,
            vendor_system=r.actor.vendor_system,
            person_id=r.actor.person_id,
        ),
        municipality=r.municipality,
        patients=[
            common_pb2.NationalId(
                value=p.national_id, type=common_pb2.NationalIdType.Value(type_name_of(p.type))
            )
            for p in r.patients
        ],
        action=ACTION_PB[r.action],
        resource=r.resource,
        purpose=pb.Purpose(
            service_code=SERVICE_CODE_PB.get(r.service_code, common_pb2.SERVICE_CODE_UNSPECIFIED),
            alarm_id=r.alarm_id,
        ),
        outcome=OUTCOME_PB[r.outcome],
        outcome_reason=r.outcome_reason,
        stale_data=r.stale_data,
        occurred_time=timestamp(r.occurred_time),
        request_id=r.request_id,
        trace_id=r.trace_id,
        access_basis=r.access_basis,
        sequence=r.sequence,
        hash=r.hash,
        previous_hash=r.previous_hash,
        record_time=timestamp(r.record_time),
    )


def checkpoint_to_pb(c: Checkpoint | None) -> pb.Checkpoint | None:
    if c is None:
        return None
    return pb.Checkpoint(
        municipality=c.municipality,
        sequence=c.sequence,
        head_hash=c.head_hash,
        sign_time=timestamp(c.sign_time),
        key_id=c.key_id,
        signature=c.signature,
    )


def verification_to_pb(v: Verification) -> pb.VerifyChainResponse:
    return pb.VerifyChainResponse(
        intact=v.intact,
        records_checked=v.records_checked,
        first_bad_sequence=v.first_bad_sequence,
        problem=pb.ChainProblem.Value(f"CHAIN_PROBLEM_{v.problem.value}")
        if v.problem
        else pb.CHAIN_PROBLEM_UNSPECIFIED,
        latest_checkpoint=checkpoint_to_pb(v.latest_checkpoint),
    )


def record_response(placed: Sequence[Appended]) -> pb.RecordResponse:
    return pb.RecordResponse(
        results=[
            pb.RecordResult(record_id=p.record_id, created=p.created, sequence=p.sequence)
            for p in placed
        ]
    )


def _time_range(period: common_pb2.Period) -> tuple[datetime | None, datetime | None]:
    """A period's start and end; None for a side left open."""
    return (
        period.start_time.ToDatetime(tzinfo=UTC) if period.HasField("start_time") else None,
        period.end_time.ToDatetime(tzinfo=UTC) if period.HasField("end_time") else None,
    )


def query_from_pb(request: pb.QueryRequest) -> RecordQuery:
    since, until = _time_range(request.time_range)
    return RecordQuery(
        request.municipality,
        national_id=request.patient.value,
        client_id=request.actor_client_id,
        since=since,
        until=until,
        page_size=request.page_size,
        page_token=request.page_token,
    )


def query_response(page: Page) -> pb.QueryResponse:
    return pb.QueryResponse(
        records=[record_to_pb(r) for r in page.records], next_page_token=page.next_page_token
    )


def export_query_from_pb(request: pb.ExportFhirRequest) -> RecordQuery:
    since, until = _time_range(request.time_range)
    return RecordQuery(
        request.municipality,
        national_id=request.patient.value,
        since=since,
        until=until,
        page_size=request.page_size,
        page_token=request.page_token,
    )


def export_response(export: FhirExport) -> pb.ExportFhirResponse:
    return pb.ExportFhirResponse(
        fhir_bundle=export.bundle, content_type=MEDIA_TYPE, next_page_token=export.next_page_token
    )
