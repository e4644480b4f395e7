"""One welfare-technology event as one journal note: a FHIR R4 transaction Bundle and its
Norwegian (bokmål) text, as a nurse reads them in the EPJ (DESIGN.md §3, "What becomes a note").

What each payload becomes:

- medication_dispense: a `MedicationDispense` (status completed, `type` from
  vkp-medicationdispense-events-v090, whenPrepared = planned time, whenHandedOver = actual time).
- dispenser_alert: a `DetectedIssue` (status final, `code` from vkp-alert-code-v090 1.x,
  severity from the event's severity, identifiedDateTime = occurred time, detail = vendor text).
- supervision: an `Encounter` (status finished, class v3-ActCode VR, `type` from
  vkp-encounter-mode-v090, `reasonCode` from vkp-encounter-reason-v090) and one `Observation`
  per supervision observation (`code` from vkp-alert-code-v090 4.x), referring to the Encounter.
- home_measurement: an `Observation` (status final, LOINC code, UCUM valueQuantity).
- alarm_step: not here (`NotRenderable`); the steps of an alarm form a handling log elsewhere.

Where the patient, the device and the vendor organisation go (only elements whose R4 reference
targets allow them; every reference is logical, by identifier):

| resource           | patient | device (`Device`)       | vendor (`Organization`)          |
|--------------------|---------|-------------------------|----------------------------------|
| MedicationDispense | subject | performer[0].actor      | performer[1].actor               |
| DetectedIssue      | patient | author                  | none: R4 allows no Organization  |
| Encounter          | subject | none: R4 has no element | serviceProvider                  |
| Observation        | subject | device                  | performer                        |

The vendor system the event came through is `meta.source` (`urn:vkp:<vendor system>`) of every
resource.

Identifiers:
- The note's resources: `NOTE_IDENTIFIER_SYSTEM` with value `<entry id>/<n>` (n = 1, 2, ... in
  entry order). Each entry is a conditional create on that identifier (`ifNoneExist`), so a
  retried delivery creates nothing twice; its fullUrl is `urn:uuid:` + uuid5(NOTE_NAMESPACE,
  `<entry id>/<n>`): the same event and context give the same Bundle.
- Devices: `urn:vkp:device:<vendor organisation number>` with the vendor's device id: device ids
  are unique only within a vendor.
- Patients: FNR, D-number or FH-number system (domain/README.md) by the id's stated type, else by
  its digits.

The code systems' displays come from `codesystems.json` beside this module, a verbatim copy of the
VKP code systems 0.9.0 (domain/vkp-codesystems.json).

Pure: no I/O but reading that data file, no gRPC, no clock.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

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
from google.protobuf.timestamp_pb2 import Timestamp

from vkp.common.v1 import common_pb2, event_pb2
from vkp_lib.national_id import (
    IDENTIFIER_SYSTEMS,
    InvalidNationalId,
    NationalIdKind,
    parse_national_id,
)

#: The identifier system of the hub's journal-note resources; values are `<entry id>/<n>`.
NOTE_IDENTIFIER_SYSTEM = "urn:vkp:journal-note"
#: The uuid5 namespace of the entries' fullUrls: uuid5(NAMESPACE_URL, NOTE_IDENTIFIER_SYSTEM).
NOTE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NOTE_IDENTIFIER_SYSTEM)
#: The identifier system of a vendor's devices: this prefix plus the vendor's organisation number.
DEVICE_IDENTIFIER_SYSTEM_PREFIX = "urn:vkp:device:"
#: Enhetsregisteret's organisation numbers.
ORGANIZATION_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"

_VKP = "http://ehelse.no/fhir/CodeSystem/"
ALERT_CODE_SYSTEM = _VKP + "vkp-alert-code-v090"
MEDICATION_DISPENSE_EVENT_SYSTEM = _VKP + "vkp-medicationdispense-events-v090"
ENCOUNTER_MODE_SYSTEM = _VKP + "vkp-encounter-mode-v090"
ENCOUNTER_REASON_SYSTEM = _VKP + "vkp-encounter-reason-v090"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"

OSLO = ZoneInfo("Europe/Oslo")
#: Between the start and end of a time span (an en dash, U+2013), as in 08:00-08:01.
_EN_DASH = "\u2013"

_PATIENT_ID_KINDS = {
    common_pb2.NATIONAL_ID_TYPE_FNR: NationalIdKind.FNR,
    common_pb2.NATIONAL_ID_TYPE_DNR: NationalIdKind.DNR,
    common_pb2.NATIONAL_ID_TYPE_FHN: NationalIdKind.FHN,
}
#: The Norwegian word of each reported severity (vkp-severity-level-v090 displays).
_SEVERITY_WORDS = {
    common_pb2.SEVERITY_NORMAL: "Normal",
    common_pb2.SEVERITY_MODERATE: "Moderat",
    common_pb2.SEVERITY_SERIOUS: "Alvorlig",
    common_pb2.SEVERITY_CRITICAL: "Kritisk",
}
#: DetectedIssue.severity (high | moderate | low) of each reported severity.
_ISSUE_SEVERITIES = {
    common_pb2.SEVERITY_NORMAL: "low",
    common_pb2.SEVERITY_MODERATE: "moderate",
    common_pb2.SEVERITY_SERIOUS: "high",
    common_pb2.SEVERITY_CRITICAL: "high",
}
#: How a nurse writes a few UCUM units; any other unit is written as its UCUM code.
_UNIT_DISPLAYS = {"mm[Hg]": "mmHg", "Cel": "°C", "[degF]": "°F", "{beats}/min": "/min"}
#: The alert group (the definition's prefix) whose codes are a dose not handed over.
_NOT_DISPENSED = "Medisin ikke utlevert"
#: Image-based supervision modes: the note calls them camera supervision (kameratilsyn).
_CAMERA_MODES = frozenset({"0", "1"})
#: The alert codes naming camera supervision, by encounter reason: 1 planned, 2 event-based.
_CAMERA_SUPERVISION_CODES = {"1": "4.26", "2": "4.25"}


class NotRenderable(ValueError):
    """The event makes no note here: an alarm step (alarm handling logs are rendered
    elsewhere), or a patient id without a national identifier system. The message never
    repeats health data."""


@dataclass(frozen=True)
class NoteContext:
    """What the hub knows about an event besides the event itself."""

    #: The hub's id of the event (a UUID string): the note's idempotency key.
    entry_id: str
    #: The vendor's organisation number, e.g. "912340007".
    vendor_organization_number: str
    #: The vendor's name, e.g. "Dosetta AS"; empty when unknown (the number stands in).
    vendor_name: str
    #: The vendor system the event came through, "vendors/912340007/systems/dispenser-cloud".
    vendor_system: str


@dataclass(frozen=True)
class _Concept:
    display: str
    definition: str


@cache
def _code_systems() -> dict[str, dict[str, _Concept]]:
    """The VKP code systems: url -> code -> concept, nested concepts flattened."""
    text = resources.files("vkp_journaling").joinpath("codesystems.json").read_text("utf-8")
    systems: dict[str, dict[str, _Concept]] = {}

    def add(table: dict[str, _Concept], concepts: Sequence[dict[str, Any]]) -> None:
        for concept in concepts:
            table[concept["code"]] = _Concept(
                concept.get("display", ""), concept.get("definition", "")
            )
            add(table, concept.get("concepts", []))

    for system in json.loads(text):
        table = systems.setdefault(system["url"], {})
        add(table, system.get("concepts", []))
    return systems


def _concept(system: str, code: str) -> _Concept:
    concept = _code_systems()[system].get(code)
    if concept is None:
        raise NotRenderable(f"code {code!r} is not in {system}")
    return concept


def _coding(system: str, code: str) -> Coding:
    return Coding(system=system, code=code, display=_concept(system, code).display)


# --- times and words ------------------------------------------------------------------------


def _local(stamp: Timestamp) -> datetime:
    """A protobuf timestamp in Norwegian local time (aware)."""
    return stamp.ToDatetime(tzinfo=UTC).astimezone(OSLO)


def _clock(when: datetime) -> str:
    return when.strftime("%H:%M")


def _date(when: datetime) -> str:
    return when.strftime("%d.%m.%Y")


def _clock_on(when: datetime, day_of: datetime) -> str:
    """HH:MM, with the date in front when `when` falls on another day than `day_of`."""
    if when.date() == day_of.date():
        return _clock(when)
    return f"{_date(when)} {_clock(when)}"


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lowered(text: str) -> str:
    return text[:1].lower() + text[1:]


def _sentence(text: str) -> str:
    """The text as a sentence: stripped, ending with a full stop unless it ends otherwise."""
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _number(value: float) -> str:
    """A measured value as a Norwegian writes it: 72, 37,5."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value).replace(".", ",")


def _unit_display(unit: str) -> str:
    return _UNIT_DISPLAYS.get(unit, unit)


def _severity_sentence(event: event_pb2.Event) -> str:
    """The severity, when it says more than that all is as usual (a nurse writes no "Normal")."""
    if event.severity == common_pb2.SEVERITY_NORMAL:
        return ""
    word = _SEVERITY_WORDS.get(event.severity)
    return f"Alvorlighetsgrad: {word}." if word else ""


def _device_sentence(event: event_pb2.Event, label: str) -> str:
    if not event.HasField("device"):
        return ""
    device = event.device
    named = f"{device.display} ({device.device_id})" if device.display else device.device_id
    return f"{label}: {named}."


def _joined(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)


# --- the Norwegian text ---------------------------------------------------------------------


def _dispense_text(event: event_pb2.Event) -> str:
    dispense = event.medication_dispense
    concept = _concept(MEDICATION_DISPENSE_EVENT_SYSTEM, dispense.event_code)
    # 1.x: the display reads as a nurse writes ("medisin utlevert uassistert"); 2.x and 3 read
    # better as their definitions ("Forhåndsutmating av medisin uten assistanse").
    what = concept.display if dispense.event_code.startswith("1") else concept.definition
    handed_over = _local(
        dispense.actual_time if dispense.HasField("actual_time") else event.occurred_time
    )
    main = f"{_capitalized(what)} kl. {_clock(handed_over)}"
    if dispense.HasField("planned_time"):
        main += f" (planlagt {_clock_on(_local(dispense.planned_time), handed_over)})"
    if dispense.medication_text.strip():
        main += f": {dispense.medication_text.strip()}"
    return _joined(_sentence(main), _device_sentence(event, "Dispenser"), _severity_sentence(event))


def _alert_text(event: event_pb2.Event) -> str:
    alert = event.dispenser_alert
    concept = _concept(ALERT_CODE_SYSTEM, alert.alert_code)
    group = concept.definition.split(":", 1)[0].strip() if ":" in concept.definition else ""
    occurred = _local(event.occurred_time)
    planned = (
        _clock_on(_local(alert.planned_time), occurred) if alert.HasField("planned_time") else ""
    )
    medication = alert.medication_text.strip()
    if group == _NOT_DISPENSED:
        # 1.1-1.4: a dose not handed over, e.g. "Medisin ikke utlevert til planlagt tid 08:00".
        main = f"{_NOT_DISPENSED} til planlagt tid" + (f" {planned}" if planned else "")
        if alert.alert_code != "1.1":
            main += f" ({_lowered(concept.display)})"
        sentences = [_sentence(main + (f": {medication}" if medication else ""))]
    else:
        # Stopped dispensing, medication plan, technical: "Teknisk varsel: Batteri lavt."
        main = f"{group}: {concept.display}" if group else concept.display
        if planned:
            main += f" (dose planlagt {planned})"
        sentences = [_sentence(main), _sentence(f"Gjelder: {medication}") if medication else ""]
    return _joined(
        *sentences,
        _sentence(alert.text),
        _device_sentence(event, "Dispenser"),
        _severity_sentence(event),
    )


def _supervision_heading(supervision: event_pb2.SupervisionEncounter) -> str:
    """E.g. "Planlagt kameratilsyn (bildetilsyn anonymisert)" or "Hendelsesbasert tilsyn (toveis
    tale)": camera modes are named by the alert codes 4.25/4.26, the others by the reason."""
    mode = _concept(ENCOUNTER_MODE_SYSTEM, supervision.mode_code).display
    reason = _concept(ENCOUNTER_REASON_SYSTEM, supervision.reason_code).display
    camera_code = _CAMERA_SUPERVISION_CODES.get(supervision.reason_code)
    if supervision.mode_code in _CAMERA_MODES and camera_code is not None:
        kind = _concept(ALERT_CODE_SYSTEM, camera_code).display
    else:
        kind = _capitalized(reason)
    return f"{kind} ({mode})"


def _observation_phrase(
    observation: event_pb2.SupervisionObservation, start: datetime, *, with_text: bool
) -> str:
    phrase = _concept(ALERT_CODE_SYSTEM, observation.alert_code).display
    if observation.HasField("observed_time"):
        phrase += f" ({_clock_on(_local(observation.observed_time), start)})"
    text = observation.text.strip().rstrip(".")
    return f"{phrase}: {text}" if with_text and text else phrase


def _supervision_text(event: event_pb2.Event) -> str:
    supervision = event.supervision
    start = _local(supervision.period.start_time)
    when = f"{_date(start)} kl. {_clock(start)}"
    if supervision.period.HasField("end_time"):
        end = _local(supervision.period.end_time)
        same_day = end.date() == start.date()
        when += _EN_DASH + (_clock(end) if same_day else f"{_date(end)} kl. {_clock(end)}")
    main = f"{_supervision_heading(supervision)} {when}"
    if supervision.location.strip():
        main += f", {supervision.location.strip()}"
    observed = "; ".join(
        _observation_phrase(o, start, with_text=True) for o in supervision.observations
    )
    return _joined(
        _sentence(main),
        _sentence(f"Observert: {observed}") if observed else "",
        _sentence(supervision.text),
        _severity_sentence(event),
    )


def _measurement_text(event: event_pb2.Event) -> str:
    measurement = event.home_measurement
    what = measurement.display.strip() or f"LOINC {measurement.loinc_code}"
    value = f"{_number(measurement.value)} {_unit_display(measurement.unit)}"
    main = f"Måling: {what} {value} kl. {_clock(_local(event.occurred_time))}"
    return _joined(_sentence(main), _device_sentence(event, "Måler"), _severity_sentence(event))


def _payload_kind(event: event_pb2.Event) -> str:
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
    kind = _payload_kind(event)
    if kind == "medication_dispense":
        return _dispense_text(event)
    if kind == "dispenser_alert":
        return _alert_text(event)
    if kind == "supervision":
        return _supervision_text(event)
    return _measurement_text(event)


# --- references -----------------------------------------------------------------------------


def _patient_system(patient: common_pb2.NationalId) -> str:
    """The identifier system of the patient's id: its stated type, else what its digits say."""
    kind = _PATIENT_ID_KINDS.get(patient.type)
    if kind is None:
        try:
            kind = parse_national_id(patient.value, allow_synthetic=True).kind
        except InvalidNationalId as exc:
            raise NotRenderable(f"the patient id is invalid: {exc.reason}") from None
    system = IDENTIFIER_SYSTEMS.get(kind)
    if system is None:
        raise NotRenderable(f"a patient id of kind {kind.value} has no national identifier system")
    return system


def _patient(event: event_pb2.Event) -> Reference:
    return Reference(
        type="Patient",
        identifier=Identifier(system=_patient_system(event.patient), value=event.patient.value),
    )


def _device(event: event_pb2.Event, context: NoteContext) -> Reference | None:
    if not event.HasField("device"):
        return None
    device = event.device
    return Reference(
        type="Device",
        identifier=Identifier(
            system=DEVICE_IDENTIFIER_SYSTEM_PREFIX + context.vendor_organization_number,
            value=device.device_id,
        ),
        display=device.display or None,
    )


def _vendor(context: NoteContext) -> Reference:
    return Reference(
        type="Organization",
        identifier=Identifier(
            system=ORGANIZATION_NUMBER_SYSTEM, value=context.vendor_organization_number
        ),
        display=context.vendor_name or context.vendor_organization_number,
    )


# --- resources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Note:
    """What every resource of one note shares."""

    event: event_pb2.Event
    context: NoteContext

    def identifier(self, n: int) -> list[Identifier]:
        return [Identifier(system=NOTE_IDENTIFIER_SYSTEM, value=_note_key(self.context, n))]

    def meta(self) -> Meta | None:
        system = self.context.vendor_system
        return Meta(source=f"urn:vkp:{system}") if system else None


def _note_key(context: NoteContext, n: int) -> str:
    return f"{context.entry_id}/{n}"


def _full_url(context: NoteContext, n: int) -> str:
    return f"urn:uuid:{uuid.uuid5(NOTE_NAMESPACE, _note_key(context, n))}"


def _text(text: str) -> Narrative:
    escaped = html.escape(text, quote=False)
    return Narrative(status="generated", div=f'<div xmlns="{XHTML_NAMESPACE}">{escaped}</div>')


def _medication_dispense(note: _Note, text: str) -> list[DomainResource]:
    event, dispense = note.event, note.event.medication_dispense
    performers = [
        MedicationDispensePerformer(actor=actor)
        for actor in (_device(event, note.context), _vendor(note.context))
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
        subject=_patient(event),
        performer=performers,
        type=CodeableConcept(
            coding=[_coding(MEDICATION_DISPENSE_EVENT_SYSTEM, dispense.event_code)]
        ),
        whenPrepared=(_local(dispense.planned_time) if dispense.HasField("planned_time") else None),
        whenHandedOver=_local(handed_over),
    )
    return [resource]


def _detected_issue(note: _Note, text: str) -> list[DomainResource]:
    event, alert = note.event, note.event.dispenser_alert
    resource = DetectedIssue(
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="final",
        code=CodeableConcept(coding=[_coding(ALERT_CODE_SYSTEM, alert.alert_code)]),
        severity=_ISSUE_SEVERITIES.get(event.severity),
        patient=_patient(event),
        identifiedDateTime=_local(event.occurred_time),
        author=_device(event, note.context),
        detail=alert.text.strip() or None,
    )
    return [resource]


def _supervision(note: _Note, text: str) -> list[DomainResource]:
    event, supervision = note.event, note.event.supervision
    start = _local(supervision.period.start_time)
    end = _local(supervision.period.end_time) if supervision.period.HasField("end_time") else None
    location = supervision.location.strip()
    encounter = Encounter(
        meta=note.meta(),
        text=_text(text),
        identifier=note.identifier(1),
        status="finished",
        class_fhir=Coding(system=ACT_CODE_SYSTEM, code="VR", display="virtual"),
        type=[CodeableConcept(coding=[_coding(ENCOUNTER_MODE_SYSTEM, supervision.mode_code)])],
        subject=_patient(event),
        period=Period(start=start, end=end),
        reasonCode=[
            CodeableConcept(coding=[_coding(ENCOUNTER_REASON_SYSTEM, supervision.reason_code)])
        ],
        location=[EncounterLocation(location=Reference(display=location))] if location else None,
        serviceProvider=_vendor(note.context),
    )
    resources_: list[DomainResource] = [encounter]
    for n, observation in enumerate(supervision.observations, start=2):
        observed = (
            _local(observation.observed_time) if observation.HasField("observed_time") else start
        )
        phrase = _observation_phrase(observation, start, with_text=True)
        resources_.append(
            Observation(
                meta=note.meta(),
                text=_text(_sentence(f"Observert: {phrase}")),
                identifier=note.identifier(n),
                status="final",
                code=CodeableConcept(coding=[_coding(ALERT_CODE_SYSTEM, observation.alert_code)]),
                subject=_patient(event),
                encounter=Reference(reference=_full_url(note.context, 1)),
                effectiveDateTime=observed,
                performer=[_vendor(note.context)],
                note=(
                    [Annotation(text=observation.text.strip())]
                    if observation.text.strip()
                    else None
                ),
                device=_device(event, note.context),
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
        subject=_patient(event),
        effectiveDateTime=_local(event.occurred_time),
        performer=[_vendor(note.context)],
        valueQuantity=Quantity(
            value=measurement.value,
            unit=_unit_display(measurement.unit),
            system=UCUM_SYSTEM,
            code=measurement.unit,
        ),
        device=_device(event, note.context),
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
    kind = _payload_kind(event)
    text = narrative(event, context)
    resources_ = _BUILDERS[kind](_Note(event, context), text)
    entries = []
    for n, resource in enumerate(resources_, start=1):
        resource_type = resource.get_resource_type()
        entries.append(
            BundleEntry(
                fullUrl=_full_url(context, n),
                resource=resource,
                request=BundleEntryRequest(
                    method="POST",
                    url=resource_type,
                    ifNoneExist=f"identifier={NOTE_IDENTIFIER_SYSTEM}|{_note_key(context, n)}",
                ),
            )
        )
    bundle = Bundle(type="transaction", entry=entries)
    dumped: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
    return dumped
