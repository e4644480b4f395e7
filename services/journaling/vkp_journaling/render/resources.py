"""The FHIR resources of a note, one builder per payload kind, and the transaction Bundle: FHIR
JSON built directly, as the R4B models (fhir.resources) write it: elements without a value left
out, times as ISO 8601 with their offset, decimals as JSON numbers. The tests check every kind
against those models and the golden files; building and dumping the models for every note cost
more than half of a delivery's CPU, and the EPJ validates what it receives all the same."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vkp.common.v1 import common_pb2, event_pb2
from vkp_journaling.render.codes import (
    ACT_CODE_SYSTEM,
    ALERT_CODE_SYSTEM,
    ENCOUNTER_MODE_SYSTEM,
    ENCOUNTER_REASON_SYSTEM,
    LOINC_SYSTEM,
    MEDICATION_DISPENSE_EVENT_SYSTEM,
    UCUM_SYSTEM,
    coding,
)
from vkp_journaling.render.note import (
    NOTE_IDENTIFIER_SYSTEM,
    NoteContext,
    full_url,
    note_key,
)
from vkp_journaling.render.references import device, patient, vendor
from vkp_journaling.render.text import narrative, observation_phrase, payload_kind
from vkp_journaling.render.words import local, sentence, unit_display

Json = dict[str, Any]
XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"

#: DetectedIssue.severity (high | moderate | low) of each reported severity.
_ISSUE_SEVERITIES = {
    common_pb2.SEVERITY_NORMAL: "low",
    common_pb2.SEVERITY_MODERATE: "moderate",
    common_pb2.SEVERITY_SERIOUS: "high",
    common_pb2.SEVERITY_CRITICAL: "high",
}


def _resource(resource_type: str, **elements: Any) -> Json:
    """A resource of its elements that have a value."""
    return {"resourceType": resource_type, **_present(elements)}


def _present(elements: dict[str, Any]) -> Json:
    return {name: value for name, value in elements.items() if value is not None}


def _instant(when: datetime) -> str:
    return when.isoformat()


@dataclass(frozen=True)
class _Note:
    """What every resource of one note shares."""

    event: event_pb2.Event
    context: NoteContext

    def identifier(self, n: int) -> list[Json]:
        return [{"system": NOTE_IDENTIFIER_SYSTEM, "value": note_key(self.context.entry_id, n)}]

    def meta(self) -> Json | None:
        system = self.context.vendor_system
        return {"source": f"urn:vkp:{system}"} if system else None


def _text(text: str) -> Json:
    escaped = html.escape(text, quote=False)
    return {"status": "generated", "div": f'<div xmlns="{XHTML_NAMESPACE}">{escaped}</div>'}


def _medication_dispense(note: _Note, text: str) -> list[Json]:
    event, dispense = note.event, note.event.medication_dispense
    performers = [
        {"actor": actor}
        for actor in (device(event, note.context), vendor(note.context))
        if actor is not None
    ]
    handed_over = dispense.actual_time if dispense.HasField("actual_time") else event.occurred_time
    resource = _resource(
        "MedicationDispense",
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="completed",
        medicationCodeableConcept={"text": dispense.medication_text.strip() or "Ikke oppgitt"},
        subject=patient(event),
        performer=performers or None,
        type={"coding": [coding(MEDICATION_DISPENSE_EVENT_SYSTEM, dispense.event_code)]},
        whenPrepared=(
            _instant(local(dispense.planned_time)) if dispense.HasField("planned_time") else None
        ),
        whenHandedOver=_instant(local(handed_over)),
    )
    return [resource]


def _detected_issue(note: _Note, text: str) -> list[Json]:
    event, alert = note.event, note.event.dispenser_alert
    resource = _resource(
        "DetectedIssue",
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="final",
        code={"coding": [coding(ALERT_CODE_SYSTEM, alert.alert_code)]},
        severity=_ISSUE_SEVERITIES.get(event.severity),
        patient=patient(event),
        identifiedDateTime=_instant(local(event.occurred_time)),
        author=device(event, note.context),
        detail=alert.text.strip() or None,
    )
    return [resource]


def _supervision(note: _Note, text: str) -> list[Json]:
    event, supervision = note.event, note.event.supervision
    start = local(supervision.period.start_time)
    end = local(supervision.period.end_time) if supervision.period.HasField("end_time") else None
    location = supervision.location.strip()
    encounter = _resource(
        "Encounter",
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="finished",
        **{"class": {"system": ACT_CODE_SYSTEM, "code": "VR", "display": "virtual"}},
        type=[{"coding": [coding(ENCOUNTER_MODE_SYSTEM, supervision.mode_code)]}],
        subject=patient(event),
        period=_present({"start": _instant(start), "end": _instant(end) if end else None}),
        reasonCode=[{"coding": [coding(ENCOUNTER_REASON_SYSTEM, supervision.reason_code)]}],
        location=[{"location": {"display": location}}] if location else None,
        serviceProvider=vendor(note.context),
    )
    resources_: list[Json] = [encounter]
    for n, observation in enumerate(supervision.observations, start=2):
        observed = (
            local(observation.observed_time) if observation.HasField("observed_time") else start
        )
        phrase = observation_phrase(observation, start, with_text=True)
        remark = observation.text.strip()
        resources_.append(
            _resource(
                "Observation",
                meta=note.meta(),
                text=_text(sentence(f"Observert: {phrase}")),
                identifier=note.identifier(n),
                status="final",
                code={"coding": [coding(ALERT_CODE_SYSTEM, observation.alert_code)]},
                subject=patient(event),
                encounter={"reference": full_url(note.context, 1)},
                effectiveDateTime=_instant(observed),
                performer=[vendor(note.context)],
                note=[{"text": remark}] if remark else None,
                device=device(event, note.context),
            )
        )
    return resources_


def _measurement(note: _Note, text: str) -> list[Json]:
    event, measurement = note.event, note.event.home_measurement
    resource = _resource(
        "Observation",
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="final",
        code={
            "coding": [
                _present(
                    {
                        "system": LOINC_SYSTEM,
                        "code": measurement.loinc_code,
                        "display": measurement.display.strip() or None,
                    }
                )
            ]
        },
        subject=patient(event),
        effectiveDateTime=_instant(local(event.occurred_time)),
        performer=[vendor(note.context)],
        valueQuantity={
            "value": float(measurement.value),
            "unit": unit_display(measurement.unit),
            "system": UCUM_SYSTEM,
            "code": measurement.unit,
        },
        device=device(event, note.context),
    )
    return [resource]


_BUILDERS = {
    "medication_dispense": _medication_dispense,
    "dispenser_alert": _detected_issue,
    "supervision": _supervision,
    "home_measurement": _measurement,
}


def render_note(event: event_pb2.Event, context: NoteContext) -> dict[str, Any]:
    """The transaction Bundle (a JSON-ready dict) of one event's note, R4 (as the R4B models
    write it). Every entry is a conditional create on its note identifier. The same event and
    context give the same Bundle. Raises NotRenderable for an alarm step."""
    kind = payload_kind(event)
    text = narrative(event, context)
    return transaction(_BUILDERS[kind](_Note(event, context), text), context)


def transaction(resources: Sequence[Json], context: NoteContext) -> dict[str, Any]:
    """The transaction Bundle of a note's resources: the n-th (from 1) a conditional create on
    its note identifier `<entry id>/<n>`, with its fullUrl from the same."""
    entries = []
    for n, resource in enumerate(resources, start=1):
        key = note_key(context.entry_id, n)
        entries.append(
            {
                "fullUrl": full_url(context, n),
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": resource["resourceType"],
                    "ifNoneExist": f"identifier={NOTE_IDENTIFIER_SYSTEM}|{key}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
