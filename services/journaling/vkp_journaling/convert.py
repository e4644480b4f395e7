"""Between the journaling contract (vkp.journaling.v1) and the journal store."""

from __future__ import annotations

from datetime import UTC

from vkp.common.v1 import common_pb2
from vkp.journaling.v1 import journaling_pb2 as pb
from vkp_journaling.store import Entry, NewEntry
from vkp_lib.timestamps import timestamp

KINDS = {
    "medication_dispense": pb.PAYLOAD_KIND_MEDICATION_DISPENSE,
    "dispenser_alert": pb.PAYLOAD_KIND_DISPENSER_ALERT,
    "supervision": pb.PAYLOAD_KIND_SUPERVISION,
    "alarm_step": pb.PAYLOAD_KIND_ALARM_STEP,
    "home_measurement": pb.PAYLOAD_KIND_HOME_MEASUREMENT,
}
STATES = {name.removeprefix("EVENT_STATE_"): value for name, value in common_pb2.EventState.items()}
STATE_NAMES = {value: name for name, value in STATES.items()}


def new_entry(item: pb.EnqueueItem) -> NewEntry:
    event = item.event
    return NewEntry(
        entry_id=item.entry_id,
        municipality=event.municipality,
        patient=event.patient.value,
        kind=event.WhichOneof("payload") or "",
        event_id=event.event_id,
        service_code=common_pb2.ServiceCode.Name(event.service_code).removeprefix("SERVICE_CODE_"),
        vendor_system=item.vendor_system,
        client_id=item.client_id,
        event=event.SerializeToString(deterministic=True),
        traceparent=item.traceparent,
        occurred_time=event.occurred_time.ToDatetime(tzinfo=UTC),
        receive_time=item.receive_time.ToDatetime(tzinfo=UTC),
    )


def entry_to_pb(e: Entry) -> pb.Entry:
    return pb.Entry(
        name=f"entries/{e.entry_id}",
        event_id=e.event_id,
        vendor_system=e.vendor_system,
        municipality=e.municipality,
        patient=common_pb2.NationalId(value=e.patient),
        service_code=common_pb2.ServiceCode.Value(f"SERVICE_CODE_{e.service_code}")
        if e.service_code
        else common_pb2.SERVICE_CODE_UNSPECIFIED,
        kind=KINDS.get(e.kind, pb.PAYLOAD_KIND_UNSPECIFIED),
        sequence=e.sequence,
        state=STATES[e.state],
        attempts=e.attempts,
        next_attempt_time=timestamp(e.next_attempt_time),
        last_error_reason=e.last_error_reason,
        occurred_time=timestamp(e.occurred_time),
        create_time=timestamp(e.create_time),
        update_time=timestamp(e.update_time),
        journaled_time=timestamp(e.journaled_time),
        note_identifier=e.note_identifier,
    )
