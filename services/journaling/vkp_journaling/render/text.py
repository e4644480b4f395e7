"""The Norwegian (bokmål) text of a note."""

from __future__ import annotations

from datetime import datetime

from vkp.common.v1 import event_pb2
from vkp_journaling.render.codes import (
    ALERT_CODE_SYSTEM,
    ENCOUNTER_MODE_SYSTEM,
    ENCOUNTER_REASON_SYSTEM,
    MEDICATION_DISPENSE_EVENT_SYSTEM,
    concept,
)
from vkp_journaling.render.note import NoteContext, NotRenderable
from vkp_journaling.render.words import (
    EN_DASH,
    capitalized,
    clock,
    clock_on,
    date,
    device_sentence,
    joined,
    local,
    lowered,
    number,
    sentence,
    severity_sentence,
    unit_display,
)

#: The alert group (the definition's prefix) whose codes are a dose not handed over.
_NOT_DISPENSED = "Medisin ikke utlevert"

#: Image-based supervision modes: the note calls them camera supervision (kameratilsyn).
_CAMERA_MODES = frozenset({"0", "1"})

#: The alert codes naming camera supervision, by encounter reason: 1 planned, 2 event-based.
_CAMERA_SUPERVISION_CODES = {"1": "4.26", "2": "4.25"}


def _dispense_text(event: event_pb2.Event) -> str:
    dispense = event.medication_dispense
    code = concept(MEDICATION_DISPENSE_EVENT_SYSTEM, dispense.event_code)
    # 1.x: the display reads as a nurse writes ("medisin utlevert uassistert"); 2.x and 3 read
    # better as their definitions ("Forhåndsutmating av medisin uten assistanse").
    what = code.display if dispense.event_code.startswith("1") else code.definition
    handed_over = local(
        dispense.actual_time if dispense.HasField("actual_time") else event.occurred_time
    )
    main = f"{capitalized(what)} kl. {clock(handed_over)}"
    if dispense.HasField("planned_time"):
        main += f" (planlagt {clock_on(local(dispense.planned_time), handed_over)})"
    if dispense.medication_text.strip():
        main += f": {dispense.medication_text.strip()}"
    return joined(sentence(main), device_sentence(event, "Dispenser"), severity_sentence(event))


def _alert_text(event: event_pb2.Event) -> str:
    alert = event.dispenser_alert
    code = concept(ALERT_CODE_SYSTEM, alert.alert_code)
    group = code.definition.split(":", 1)[0].strip() if ":" in code.definition else ""
    occurred = local(event.occurred_time)
    planned = (
        clock_on(local(alert.planned_time), occurred) if alert.HasField("planned_time") else ""
    )
    medication = alert.medication_text.strip()
    if group == _NOT_DISPENSED:
        # 1.1-1.4: a dose not handed over, e.g. "Medisin ikke utlevert til planlagt tid 08:00".
        main = f"{_NOT_DISPENSED} til planlagt tid" + (f" {planned}" if planned else "")
        if alert.alert_code != "1.1":
            main += f" ({lowered(code.display)})"
        sentences = [sentence(main + (f": {medication}" if medication else ""))]
    else:
        # Stopped dispensing, medication plan, technical: "Teknisk varsel: Batteri lavt."
        main = f"{group}: {code.display}" if group else code.display
        if planned:
            main += f" (dose planlagt {planned})"
        sentences = [sentence(main), sentence(f"Gjelder: {medication}") if medication else ""]
    return joined(
        *sentences,
        sentence(alert.text),
        device_sentence(event, "Dispenser"),
        severity_sentence(event),
    )


def _supervision_heading(supervision: event_pb2.SupervisionEncounter) -> str:
    """E.g. "Planlagt kameratilsyn (bildetilsyn anonymisert)" or "Hendelsesbasert tilsyn (toveis
    tale)": camera modes are named by the alert codes 4.25/4.26, the others by the reason."""
    mode = concept(ENCOUNTER_MODE_SYSTEM, supervision.mode_code).display
    reason = concept(ENCOUNTER_REASON_SYSTEM, supervision.reason_code).display
    camera_code = _CAMERA_SUPERVISION_CODES.get(supervision.reason_code)
    if supervision.mode_code in _CAMERA_MODES and camera_code is not None:
        kind = concept(ALERT_CODE_SYSTEM, camera_code).display
    else:
        kind = capitalized(reason)
    return f"{kind} ({mode})"


def observation_phrase(
    observation: event_pb2.SupervisionObservation, start: datetime, *, with_text: bool
) -> str:
    phrase = concept(ALERT_CODE_SYSTEM, observation.alert_code).display
    if observation.HasField("observed_time"):
        phrase += f" ({clock_on(local(observation.observed_time), start)})"
    text = observation.text.strip().rstrip(".")
    return f"{phrase}: {text}" if with_text and text else phrase


def _supervision_text(event: event_pb2.Event) -> str:
    supervision = event.supervision
    start = local(supervision.period.start_time)
    when = f"{date(start)} kl. {clock(start)}"
    if supervision.period.HasField("end_time"):
        end = local(supervision.period.end_time)
        same_day = end.date() == start.date()
        when += EN_DASH + (clock(end) if same_day else f"{date(end)} kl. {clock(end)}")
    main = f"{_supervision_heading(supervision)} {when}"
    if supervision.location.strip():
        main += f", {supervision.location.strip()}"
    observed = "; ".join(
        observation_phrase(o, start, with_text=True) for o in supervision.observations
    )
    return joined(
        sentence(main),
        sentence(f"Observert: {observed}") if observed else "",
        sentence(supervision.text),
        severity_sentence(event),
    )


def _measurement_text(event: event_pb2.Event) -> str:
    measurement = event.home_measurement
    what = measurement.display.strip() or f"LOINC {measurement.loinc_code}"
    value = f"{number(measurement.value)} {unit_display(measurement.unit)}"
    main = f"Måling: {what} {value} kl. {clock(local(event.occurred_time))}"
    return joined(sentence(main), device_sentence(event, "Måler"), severity_sentence(event))


def payload_kind(event: event_pb2.Event) -> str:
    kind = event.WhichOneof("payload")
    if kind is None:
        raise NotRenderable("the event has no payload")
    if kind == "alarm_step":
        raise NotRenderable("alarm steps are journaled as alarm handling logs, not one by one")
    return kind


def narrative(event: event_pb2.Event, context: NoteContext) -> str:
    """The Norwegian (bokmål) text of the note, as a nurse would write it: short, times in
    Norwegian local time (HH:MM, with the date when the day matters), without the patient's
    national id or name. `context` names nothing in the text (the vendor is in the Bundle)."""
    kind = payload_kind(event)
    if kind == "medication_dispense":
        return _dispense_text(event)
    if kind == "dispenser_alert":
        return _alert_text(event)
    if kind == "supervision":
        return _supervision_text(event)
    return _measurement_text(event)
