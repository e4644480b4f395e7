"""Between the contracts (vkp.journaling.v1, and the audit record of a delivered note) and the
journaling domain."""

from __future__ import annotations

from datetime import UTC

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2
from vkp.journaling.v1 import journaling_pb2 as pb
from vkp_journaling.domain import pull
from vkp_journaling.domain.audit import audit_record_id
from vkp_journaling.domain.entry import Enqueued, Entry, EntryState, NewEntry
from vkp_lib import names
from vkp_lib.errors import VkpError
from vkp_lib.status import grpc_code
from vkp_lib.timestamps import timestamp

KINDS = {
    "medication_dispense": pb.PAYLOAD_KIND_MEDICATION_DISPENSE,
    "dispenser_alert": pb.PAYLOAD_KIND_DISPENSER_ALERT,
    "supervision": pb.PAYLOAD_KIND_SUPERVISION,
    "alarm_step": pb.PAYLOAD_KIND_ALARM_STEP,
    "alarm_log": pb.PAYLOAD_KIND_ALARM_LOG,
    "home_measurement": pb.PAYLOAD_KIND_HOME_MEASUREMENT,
}
#: Each state as the contract's EventState, and back.
_STATES = {state: common_pb2.EventState.Value(f"EVENT_STATE_{state.value}") for state in EntryState}
_STATE_OF = {value: state for state, value in _STATES.items()}
_SERVICE_CODE_PREFIX = "SERVICE_CODE_"


def state_to_pb(state: EntryState) -> common_pb2.EventState.ValueType:
    return _STATES[state]


def state_filter(value: common_pb2.EventState.ValueType) -> EntryState | None:
    """The state a listing asks for; None for any (EVENT_STATE_UNSPECIFIED)."""
    return _STATE_OF.get(value)


def entry_id_of(name: str) -> str:
    """The entry id in `entries/{entry_id}` (the contract's field rule has checked the form)."""
    return names.ENTRY.id_of(name) or ""


def _service_code(code: str) -> common_pb2.ServiceCode.ValueType:
    if not code:
        return common_pb2.SERVICE_CODE_UNSPECIFIED
    return common_pb2.ServiceCode.Value(_SERVICE_CODE_PREFIX + code)


def new_entry(item: pb.EnqueueItem) -> NewEntry:
    event = item.event
    service_code = common_pb2.ServiceCode.Name(event.service_code)
    return NewEntry(
        entry_id=item.entry_id,
        municipality=event.municipality,
        patient=event.patient.value,
        kind=event.WhichOneof("payload") or "",
        event_id=event.event_id,
        service_code=service_code.removeprefix(_SERVICE_CODE_PREFIX),
        vendor_system=item.vendor_system,
        client_id=item.client_id,
        event=event.SerializeToString(deterministic=True),
        traceparent=item.traceparent,
        occurred_time=event.occurred_time.ToDatetime(tzinfo=UTC),
        receive_time=item.receive_time.ToDatetime(tzinfo=UTC),
        alarm_id=event.alarm_step.alarm_id,
        closes_alarm=event.alarm_step.closes_alarm,
    )


def enqueued_to_pb(result: Enqueued) -> pb.EnqueueResult:
    return pb.EnqueueResult(
        entry_id=result.entry_id, created=result.created, state=state_to_pb(result.state)
    )


def entry_to_pb(e: Entry) -> pb.Entry:
    return pb.Entry(
        name=names.ENTRY.format(entry_id=e.entry_id),
        event_id=e.event_id,
        vendor_system=e.vendor_system,
        municipality=e.municipality,
        patient=common_pb2.NationalId(value=e.patient),
        service_code=_service_code(e.service_code),
        kind=KINDS.get(e.kind, pb.PAYLOAD_KIND_UNSPECIFIED),
        sequence=e.sequence,
        state=state_to_pb(e.state),
        attempts=e.attempts,
        next_attempt_time=timestamp(e.next_attempt_time),
        last_error_reason=e.last_error_reason,
        occurred_time=timestamp(e.occurred_time),
        create_time=timestamp(e.create_time),
        update_time=timestamp(e.update_time),
        journaled_time=timestamp(e.journaled_time),
        note_identifier=e.note_identifier,
    )


def audit_record(entry: Entry) -> audit_pb2.AuditRecord:
    """The audit record of a delivered note: the vendor system created a note in the patient's
    record, for its service code."""
    record = audit_pb2.AuditRecord(
        record_id=audit_record_id(entry.entry_id),
        actor=audit_pb2.Actor(
            client_id=entry.client_id,
            organization_number=entry.vendor_organization_number,
            vendor_system=entry.vendor_system,
        ),
        municipality=entry.municipality,
        patients=[common_pb2.NationalId(value=entry.patient)],
        action=audit_pb2.AUDIT_ACTION_CREATE,
        resource=f"journal note {entry.note_identifier}",
        purpose=audit_pb2.Purpose(service_code=_service_code(entry.service_code)),
        outcome=audit_pb2.AUDIT_OUTCOME_ALLOWED,
    )
    record.occurred_time.FromDatetime(entry.journaled_time or entry.update_time)
    return record


# -- pull mode ---------------------------------------------------------------------------------

_OUTCOMES = {
    pb.ACKNOWLEDGEMENT_OUTCOME_JOURNALED: pull.Outcome.JOURNALED,
    pb.ACKNOWLEDGEMENT_OUTCOME_REJECTED: pull.Outcome.REJECTED,
}


def pending_note_to_pb(note: pull.PendingNote) -> pb.PendingNote:
    e = note.entry
    return pb.PendingNote(
        entry=names.ENTRY.format(entry_id=e.entry_id),
        patient=common_pb2.NationalId(value=e.patient),
        sequence=e.sequence,
        fhir_bundle=note.bundle,
        content_type=pull.FHIR_BUNDLE_TYPE,
    )


def acknowledgement(ack: pb.Acknowledgement) -> pull.Acknowledgement:
    """One answer (the contract's field rules have checked the name and the outcome)."""
    return pull.Acknowledgement(entry_id_of(ack.entry), _OUTCOMES[ack.outcome], ack.reason)


def acknowledge_result_to_pb(entry: str, result: EntryState | VkpError) -> pb.AcknowledgeResult:
    if isinstance(result, VkpError):
        return pb.AcknowledgeResult(
            entry=entry,
            error=common_pb2.ItemError(
                code=grpc_code(result.kind).value[0], reason=result.reason, message=result.message
            ),
        )
    return pb.AcknowledgeResult(entry=entry, state=state_to_pb(result))
