"""Valid events of every payload kind, for tests and benchmarks: synthetic patients only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vkp.common.v1 import common_pb2, event_pb2
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.timestamps import timestamp

#: The organisation number of the municipality the sample events belong to (mod-11 valid).
MUNICIPALITY = "312229544"
#: The payload kinds of an event, as the names of the `payload` oneof.
PAYLOAD_KINDS = (
    "medication_dispense",
    "dispenser_alert",
    "supervision",
    "alarm_step",
    "home_measurement",
)


def sample_event(
    kind: str, *, event_id: str = "evt-0001", national_id: str = "", at: datetime | None = None
) -> event_pb2.Event:
    """A valid event with the payload `kind`, for a synthetic patient, occurring at `at`."""
    when = at or datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    event = event_pb2.Event(
        event_id=event_id,
        municipality=MUNICIPALITY,
        patient=common_pb2.NationalId(value=national_id or TEST_PEOPLE[0].national_id),
        device=common_pb2.DeviceReference(device_id="DISP-00042", display="Medisindispenser"),
        occurred_time=timestamp(when),
        severity=common_pb2.SEVERITY_NORMAL,
    )
    if kind == "medication_dispense":
        event.service_code = common_pb2.SERVICE_CODE_MD
        event.medication_dispense.CopyFrom(
            event_pb2.MedicationDispense(
                event_code="1.1",
                planned_time=timestamp(when),
                actual_time=timestamp(when + timedelta(minutes=3)),
                medication_text="Morgendose",
            )
        )
    elif kind == "dispenser_alert":
        event.service_code = common_pb2.SERVICE_CODE_MD
        event.severity = common_pb2.SEVERITY_SERIOUS
        event.dispenser_alert.CopyFrom(
            event_pb2.DispenserAlert(alert_code="1.1", planned_time=timestamp(when))
        )
    elif kind == "supervision":
        event.service_code = common_pb2.SERVICE_CODE_DT
        event.device.display = "Tilsynskamera"
        event.supervision.CopyFrom(
            event_pb2.SupervisionEncounter(
                mode_code="0",
                reason_code="1",
                period=common_pb2.Period(
                    start_time=timestamp(when), end_time=timestamp(when + timedelta(minutes=1))
                ),
                location="Soverom",
                observations=[
                    event_pb2.SupervisionObservation(
                        alert_code="4.20", observed_time=timestamp(when)
                    )
                ],
                text="Ligger i sengen, puster rolig.",
            )
        )
    elif kind == "alarm_step":
        event.service_code = common_pb2.SERVICE_CODE_TA
        event.ClearField("device")
        event.alarm_step.CopyFrom(
            event_pb2.AlarmStep(
                alarm_id="alarm-0001",
                alert_code="3",
                timeline_code="0",
                triage_code="Y",
                responder="Operatør 12",
                text="Alarm utløst fra armbånd.",
            )
        )
    elif kind == "home_measurement":
        event.service_code = common_pb2.SERVICE_CODE_DHO
        event.device.display = "Blodtrykksmåler"
        event.home_measurement.CopyFrom(
            event_pb2.HomeMeasurement(
                loinc_code="8867-4", display="Heart rate", value=72, unit="/min"
            )
        )
    else:
        raise ValueError(f"no payload kind {kind!r}")
    return event


#: A safety alarm's handling, step by step: (timeline code, responder, text), three minutes
#: apart; the last step closes the alarm.
ALARM_TIMELINE = (
    ("0", "", "Alarm utløst fra armbånd."),
    ("1", "Operatør 12", "Samtale via alarmen, bruker svarer ikke."),
    ("4", "Operatør 12", "Hjemmetjenesten varslet."),
    ("5", "Hjemmetjeneste sone 2", ""),
    ("7", "Hjemmetjeneste sone 2", "Bruker funnet på gulvet, ikke skadet. Hjulpet i seng."),
)


def sample_alarm(
    *,
    alarm_id: str = "alarm-0001",
    national_id: str = "",
    municipality: str = MUNICIPALITY,
    at: datetime | None = None,
    event_prefix: str = "",
    gps: bool = True,
) -> list[event_pb2.Event]:
    """The steps of one alarm (ALARM_TIMELINE), in time order, for a synthetic patient: the
    first with where the patient was (words, and a position when `gps`), the last closing the
    alarm and reported serious."""
    start = at or datetime(2026, 11, 26, 21, 40, tzinfo=UTC)
    steps = []
    for n, (code, responder, text) in enumerate(ALARM_TIMELINE):
        event = sample_event(
            "alarm_step",
            event_id=f"{event_prefix or alarm_id}-step-{n}",
            national_id=national_id,
            at=start + timedelta(minutes=3 * n),
        )
        event.municipality = municipality
        step = event.alarm_step
        step.alarm_id = alarm_id
        step.timeline_code = code
        step.responder = responder
        step.text = text
        if n == 0:
            step.location_text = "Storgata 1, 2. etasje"
            if gps:
                step.position.CopyFrom(
                    common_pb2.GeoPoint(latitude=59.91234, longitude=10.75012, accuracy_meters=25)
                )
        if n == len(ALARM_TIMELINE) - 1:
            step.closes_alarm = True
            event.severity = common_pb2.SEVERITY_SERIOUS
        steps.append(event)
    return steps
