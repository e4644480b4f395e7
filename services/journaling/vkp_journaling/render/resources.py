"""The FHIR resources of a note, one builder per payload kind, and the transaction Bundle."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.encounter import Encounter, EncounterLocation
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.medicationdispense import MedicationDispense, MedicationDispensePerformer
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.narrative import Narrative
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

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

XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"

#: DetectedIssue.severity (high | moderate | low) of each reported severity.
_ISSUE_SEVERITIES = {
    common_pb2.SEVERITY_NORMAL: "low",
    common_pb2.SEVERITY_MODERATE: "moderate",
    common_pb2.SEVERITY_SERIOUS: "high",
    common_pb2.SEVERITY_CRITICAL: "high",
}


@dataclass(frozen=True)
class _Note:
    """What every resource of one note shares."""

    event: event_pb2.Event
    context: NoteContext

    def identifier(self, n: int) -> list[Identifier]:
        return [Identifier(system=NOTE_IDENTIFIER_SYSTEM, value=note_key(self.context.entry_id, n))]

    def meta(self) -> Meta | None:
        system = self.context.vendor_system
        return Meta(source=f"urn:vkp:{system}") if system else None


def _text(text: str) -> Narrative:
    escaped = html.escape(text, quote=False)
    return Narrative(status="generated", div=f'<div xmlns="{XHTML_NAMESPACE}">{escaped}</div>')


def _medication_dispense(note: _Note, text: str) -> list[DomainResource]:
    event, dispense = note.event, note.event.medication_dispense
    performers = [
        MedicationDispensePerformer(actor=actor)
        for actor in (device(event, note.context), vendor(note.context))
        if actor is not None
    ]
    handed_over = dispense.actual_time if dispense.HasField("actual_time") else event.occurred_time
    resource = MedicationDispense(
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="completed",
        medicationCodeableConcept=CodeableConcept(
            text=dispense.medication_text.strip() or "Ikke oppgitt"
        ),
        subject=patient(event),
        performer=performers,
        type=CodeableConcept(
            coding=[coding(MEDICATION_DISPENSE_EVENT_SYSTEM, dispense.event_code)]
        ),
        whenPrepared=(local(dispense.planned_time) if dispense.HasField("planned_time") else None),
        whenHandedOver=local(handed_over),
    )
    return [resource]


def _detected_issue(note: _Note, text: str) -> list[DomainResource]:
    event, alert = note.event, note.event.dispenser_alert
    resource = DetectedIssue(
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="final",
        code=CodeableConcept(coding=[coding(ALERT_CODE_SYSTEM, alert.alert_code)]),
        severity=_ISSUE_SEVERITIES.get(event.severity),
        patient=patient(event),
        identifiedDateTime=local(event.occurred_time),
        author=device(event, note.context),
        detail=alert.text.strip() or None,
    )
    return [resource]


def _supervision(note: _Note, text: str) -> list[DomainResource]:
    event, supervision = note.event, note.event.supervision
    start = local(supervision.period.start_time)
    end = local(supervision.period.end_time) if supervision.period.HasField("end_time") else None
    location = supervision.location.strip()
    encounter = Encounter(
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="finished",
        class_fhir=Coding(system=ACT_CODE_SYSTEM, code="VR", display="virtual"),
        type=[CodeableConcept(coding=[coding(ENCOUNTER_MODE_SYSTEM, supervision.mode_code)])],
        subject=patient(event),
        period=Period(start=start, end=end),
        reasonCode=[
            CodeableConcept(coding=[coding(ENCOUNTER_REASON_SYSTEM, supervision.reason_code)])
        ],
        location=[EncounterLocation(location=Reference(display=location))] if location else None,
        serviceProvider=vendor(note.context),
    )
    resources_: list[DomainResource] = [encounter]
    for n, observation in enumerate(supervision.observations, start=2):
        observed = (
            local(observation.observed_time) if observation.HasField("observed_time") else start
        )
        phrase = observation_phrase(observation, start, with_text=True)
        resources_.append(
            Observation(
                meta=note.meta(),
                text=_text(sentence(f"Observert: {phrase}")),
                identifier=note.identifier(n),
                status="final",
                code=CodeableConcept(coding=[coding(ALERT_CODE_SYSTEM, observation.alert_code)]),
                subject=patient(event),
                encounter=Reference(reference=full_url(note.context, 1)),
                effectiveDateTime=observed,
                performer=[vendor(note.context)],
                note=(
                    [Annotation(text=observation.text.strip())]
                    if observation.text.strip()
                    else None
                ),
                device=device(event, note.context),
            )
        )
    return resources_


def _measurement(note: _Note, text: str) -> list[DomainResource]:
    event, measurement = note.event, note.event.home_measurement
    resource = Observation(
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="final",
        code=CodeableConcept(
            coding=[
                Coding(
                    system=LOINC_SYSTEM,
                    code=measurement.loinc_code,
                    display=measurement.display.strip() or None,
                )
            ]
        ),
        subject=patient(event),
        effectiveDateTime=local(event.occurred_time),
        performer=[vendor(note.context)],
        valueQuantity=Quantity(
            value=measurement.value,
            unit=unit_display(measurement.unit),
            system=UCUM_SYSTEM,
            code=measurement.unit,
        ),
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
    """The transaction Bundle (a JSON-ready dict) of one event's note, validated as R4 (R4B
    models). Every entry is a conditional create on its note identifier. The same event and
    context give the same Bundle. Raises NotRenderable for an alarm step."""
    kind = payload_kind(event)
    text = narrative(event, context)
    resources_ = _BUILDERS[kind](_Note(event, context), text)
    entries = []
    for n, resource in enumerate(resources_, start=1):
        resource_type = resource.get_resource_type()
        key = note_key(context.entry_id, n)
        entries.append(
            BundleEntry(
                fullUrl=full_url(context, n),
                resource=resource,
                request=BundleEntryRequest(
                    method="POST",
                    url=resource_type,
                    ifNoneExist=f"identifier={NOTE_IDENTIFIER_SYSTEM}|{key}",
                ),
            )
        )
    bundle = Bundle(type="transaction", entry=entries)
    dumped: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
    return dumped
