"""Ingest's messages <-> its domain types: the facts of an event its rules look at, an alarm
step's facts, receipts and item errors, event statuses, audit records, the items journaling's
Enqueue takes, and the answer of CheckOpenAlarm."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2, event_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.journaling.v1 import journaling_pb2 as jpb
from vkp_ingest.domain.alarm import Alarm, AlarmStep
from vkp_ingest.domain.checks import EventFacts
from vkp_ingest.domain.model import Outgoing, Registered, StoredEvent
from vkp_lib.audit_client import audit_record_of
from vkp_lib.auth import Principal
from vkp_lib.errors import VkpError
from vkp_lib.names import EVENT
from vkp_lib.national_id import kind_of_type
from vkp_lib.status import grpc_code
from vkp_lib.timestamps import timestamp

#: The resource an audit record of a submission names.
SUBMIT = "/vkp.ingest.v1.IngestService/SubmitEvents"
_DEFINED_TYPES = frozenset(common_pb2.NationalIdType.values())


def event_facts(event: event_pb2.Event) -> EventFacts:
    stated = event.patient.type
    return EventFacts(
        national_id=event.patient.value,
        # A value the contract does not define states no kind (the field rules refuse it first).
        stated_kind=kind_of_type(common_pb2.NationalIdType.Name(stated))
        if stated in _DEFINED_TYPES
        else None,
        occurred_time=event.occurred_time.ToDatetime(tzinfo=UTC),
    )


def alarm_step(event: event_pb2.Event, vendor_system: str) -> AlarmStep | None:
    """The facts of an alarm step from this vendor system; None for every other payload."""
    if not event.HasField("alarm_step"):
        return None
    step = event.alarm_step
    return AlarmStep(
        vendor_system=vendor_system,
        alarm_id=step.alarm_id,
        municipality=event.municipality,
        patient=event.patient.value,
        alert_code=step.alert_code,
        occurred_time=event.occurred_time.ToDatetime(tzinfo=UTC),
        closes=step.closes_alarm,
    )


def open_alarm(alarm: Alarm | None) -> pb.CheckOpenAlarmResponse:
    """CheckOpenAlarm's answer: open or closed with the alarm's times; closed with no times when
    the hub has seen no step of it for the patient asked about."""
    if alarm is None:
        return pb.CheckOpenAlarmResponse(open=False)
    answer = pb.CheckOpenAlarmResponse(
        open=alarm.open,
        opened_time=timestamp(alarm.opened_time),
        last_step_time=timestamp(alarm.last_step_time),
    )
    if alarm.closed_time is not None:
        answer.closed_time.CopyFrom(timestamp(alarm.closed_time))
    return answer


def receipt(registered: Registered) -> pb.EventReceipt:
    return pb.EventReceipt(
        event_id=registered.event_id,
        name=EVENT.format(event_id=registered.id),
        state=common_pb2.EVENT_STATE_REGISTERED,
        receive_time=timestamp(registered.receive_time),
        replayed=registered.replayed,
    )


def item_error(error: VkpError) -> common_pb2.ItemError:
    return common_pb2.ItemError(
        code=grpc_code(error.kind).value[0],
        reason=error.reason,
        message=error.message,
        field_violations=[
            common_pb2.FieldViolation(field=v.field, description=v.description, reason=v.reason)
            for v in error.violations
        ],
    )


def event_result(event_id: str, outcome: Registered | VkpError) -> pb.EventResult:
    if isinstance(outcome, VkpError):
        return pb.EventResult(event_id=event_id, error=item_error(outcome))
    return pb.EventResult(event_id=event_id, receipt=receipt(outcome))


def event_status(event_id: str, stored: StoredEvent, entry: jpb.Entry | None) -> pb.EventStatus:
    """Where an event is: REGISTERED until it is handed to journaling, then as journaling's
    entry says (QUEUED when there is none to say it: journaling could not be asked)."""
    status = pb.EventStatus(
        event_id=event_id,
        name=EVENT.format(event_id=stored.id),
        state=common_pb2.EVENT_STATE_QUEUED if stored.sent else common_pb2.EVENT_STATE_REGISTERED,
        receive_time=timestamp(stored.receive_time),
        state_time=timestamp(stored.receive_time),
    )
    if entry is not None:
        status.state = entry.state
        status.state_time.CopyFrom(entry.update_time)
        status.attempts = entry.attempts
        status.last_error_reason = entry.last_error_reason
        if entry.HasField("next_attempt_time"):
            status.next_attempt_time.CopyFrom(entry.next_attempt_time)
    return status


def audit_record(
    principal: Principal,
    *,
    vendor_system: str,
    municipality: str,
    events: Sequence[event_pb2.Event],
    allowed: bool,
    reason: str,
    now: datetime,
    trace_id: str,
) -> audit_pb2.AuditRecord:
    """The audit record of a submission of `events` (all of one municipality) by `principal`."""
    return audit_record_of(
        principal,
        vendor_system=vendor_system,
        now=now,
        municipality=municipality,
        patients=[e.patient.value for e in events],
        action=audit_pb2.AUDIT_ACTION_CREATE,
        resource=SUBMIT,
        service_code=events[0].service_code,
        outcome=audit_pb2.AUDIT_OUTCOME_ALLOWED if allowed else audit_pb2.AUDIT_OUTCOME_DENIED,
        outcome_reason=reason,
        trace_id=trace_id,
    )


def enqueue_item(event: Outgoing) -> jpb.EnqueueItem:
    return jpb.EnqueueItem(
        entry_id=event.id,
        event=event_pb2.Event.FromString(event.event),
        vendor_system=event.vendor_system,
        client_id=event.client_id,
        traceparent=event.traceparent,
        receive_time=timestamp(event.receive_time),
    )
