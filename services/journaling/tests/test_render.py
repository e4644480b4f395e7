"""Rendering an event as a journal note: a FHIR R4 transaction Bundle and its Norwegian text.

The golden files are the expected Bundles of the sample events (vkp_lib.testing.events) with
CONTEXT. After a deliberate change of the rendering, check the new output by eye and rewrite them
with
    VKP_UPDATE_GOLDEN=1 .venv/bin/pytest services/journaling/tests/test_render.py
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from vkp.common.v1 import common_pb2, event_pb2
from vkp_journaling.render import (
    NOTE_IDENTIFIER_SYSTEM,
    NOTE_NAMESPACE,
    NoteContext,
    NotRenderable,
    narrative,
    render_note,
)
from vkp_lib.national_id import NationalIdKind, synthetic_national_id
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.events import sample_event
from vkp_lib.timestamps import timestamp

GOLDEN = Path(__file__).parent / "golden"
RENDERED_KINDS = ("medication_dispense", "dispenser_alert", "supervision", "home_measurement")

CONTEXT = NoteContext(
    entry_id="5b0f1c2e-7d3a-4e8b-9f60-2a1c3d4e5f67",
    vendor_organization_number="912340007",
    vendor_name="Dosetta AS",
    vendor_system="vendors/912340007/systems/dispenser-cloud",
)
FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
FHN_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.3"
ORGANIZATION_NUMBER = "urn:oid:2.16.578.1.12.4.1.4.101"
DEVICE_SYSTEM = "urn:vkp:device:912340007"
ALERT_CODES = "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090"
DISPENSE_EVENTS = "http://ehelse.no/fhir/CodeSystem/vkp-medicationdispense-events-v090"
ENCOUNTER_MODES = "http://ehelse.no/fhir/CodeSystem/vkp-encounter-mode-v090"
ENCOUNTER_REASONS = "http://ehelse.no/fhir/CodeSystem/vkp-encounter-reason-v090"
D_NUMBER = synthetic_national_id(random.Random(2026), kind=NationalIdKind.DNR)  # noqa: S311 - synthetic data, not secrecy


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle["entry"]]


def _note(kind: str) -> dict[str, Any]:
    return render_note(sample_event(kind), CONTEXT)


def _coding(concept: dict[str, Any]) -> tuple[str, str, str]:
    (coding,) = concept["coding"]
    return coding["system"], coding["code"], coding["display"]


@pytest.mark.parametrize("kind", RENDERED_KINDS)
def test_the_note_of_each_kind_matches_its_golden_file(kind: str) -> None:
    produced = _note(kind)
    golden = GOLDEN / f"note_{kind}.json"
    if os.environ.get("VKP_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(produced, indent=2, ensure_ascii=False) + "\n")
    assert produced == json.loads(golden.read_text())


@pytest.mark.parametrize("kind", RENDERED_KINDS)
def test_the_note_is_a_valid_r4_transaction_bundle(kind: str) -> None:
    bundle = Bundle.model_validate(_note(kind))
    assert bundle.type == "transaction"


def _sparse(kind: str) -> event_pb2.Event:
    """The sample event with what may be left out left out, and the times a second apart with a
    fraction, so the optional elements and the time format are covered too."""
    event = sample_event(kind, at=datetime(2026, 7, 1, 6, 0, 1, 250000, tzinfo=UTC))
    event.ClearField("device")
    event.severity = common_pb2.SEVERITY_CRITICAL
    if kind == "medication_dispense":
        event.medication_dispense.ClearField("planned_time")
        event.medication_dispense.ClearField("actual_time")
        event.medication_dispense.medication_text = " "
    elif kind == "dispenser_alert":
        event.dispenser_alert.text = "Lokk åpnet <uten> dose"
    elif kind == "supervision":
        event.supervision.location = ""
        event.supervision.period.ClearField("end_time")
        event.supervision.observations.append(
            event_pb2.SupervisionObservation(alert_code="4.2", text="Rolig & trygg")
        )
    elif kind == "home_measurement":
        event.home_measurement.value = 37.25
        event.home_measurement.display = ""
    return event


@pytest.mark.parametrize("kind", RENDERED_KINDS)
@pytest.mark.parametrize("sparse", [False, True], ids=["sample", "sparse"])
def test_the_note_is_exactly_what_the_r4b_models_make_of_it(kind: str, sparse: bool) -> None:
    note = render_note(_sparse(kind) if sparse else sample_event(kind), CONTEXT)
    remade = Bundle.model_validate(note).model_dump(mode="json", exclude_none=True)
    assert json.loads(json.dumps(note)) == remade


@pytest.mark.parametrize("kind", RENDERED_KINDS)
def test_every_entry_is_a_conditional_create_on_its_note_identifier(kind: str) -> None:
    event = sample_event(kind)
    if kind == "supervision":  # more than one entry
        event.supervision.observations.append(
            event_pb2.SupervisionObservation(alert_code="4.2", observed_time=event.occurred_time)
        )
    entries = render_note(event, CONTEXT)["entry"]
    assert len(entries) == (3 if kind == "supervision" else 1)
    for n, entry in enumerate(entries, start=1):
        key = f"{CONTEXT.entry_id}/{n}"
        resource = entry["resource"]
        assert resource["identifier"] == [{"system": NOTE_IDENTIFIER_SYSTEM, "value": key}]
        assert entry["request"] == {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={NOTE_IDENTIFIER_SYSTEM}|{key}",
        }
        assert entry["fullUrl"] == f"urn:uuid:{uuid.uuid5(NOTE_NAMESPACE, key)}"


@pytest.mark.parametrize("kind", RENDERED_KINDS)
def test_the_same_event_gives_the_same_note(kind: str) -> None:
    assert render_note(sample_event(kind), CONTEXT) == render_note(sample_event(kind), CONTEXT)


def test_another_entry_gives_other_identifiers_and_full_urls() -> None:
    other = NoteContext("0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "912340007", "Dosetta AS", "")
    first, second = (
        _note("home_measurement")["entry"][0],
        render_note(sample_event("home_measurement"), other)["entry"][0],
    )
    assert first["fullUrl"] != second["fullUrl"]
    assert second["resource"]["identifier"][0]["value"] == f"{other.entry_id}/1"


def test_an_alarm_step_is_not_renderable() -> None:
    with pytest.raises(NotRenderable):
        render_note(sample_event("alarm_step"), CONTEXT)
    with pytest.raises(NotRenderable):
        narrative(sample_event("alarm_step"), CONTEXT)


def test_a_patient_id_that_is_no_national_id_is_not_renderable() -> None:
    event = sample_event("home_measurement")
    event.patient.value = "12345678901"  # fails mod-11
    with pytest.raises(NotRenderable):
        render_note(event, CONTEXT)


@pytest.mark.parametrize("kind", RENDERED_KINDS)
def test_no_text_contains_the_national_id(kind: str) -> None:
    national_id = TEST_PEOPLE[0].national_id
    bundle = _note(kind)
    assert national_id not in narrative(sample_event(kind), CONTEXT)
    assert all(national_id not in r["text"]["div"] for r in _resources(bundle))


@pytest.mark.parametrize("kind", RENDERED_KINDS)
def test_the_patient_is_identified_by_the_fnr_system(kind: str) -> None:
    for resource in _resources(_note(kind)):
        patient = resource["patient" if kind == "dispenser_alert" else "subject"]
        assert patient == {
            "type": "Patient",
            "identifier": {"system": FNR_SYSTEM, "value": TEST_PEOPLE[0].national_id},
        }


def test_a_d_number_patient_is_identified_by_the_d_number_system() -> None:
    bundle = render_note(sample_event("medication_dispense", national_id=D_NUMBER), CONTEXT)
    assert _resources(bundle)[0]["subject"]["identifier"] == {
        "system": DNR_SYSTEM,
        "value": D_NUMBER,
    }


def test_a_stated_id_type_decides_the_identifier_system() -> None:
    event = sample_event("home_measurement")
    event.patient.type = common_pb2.NATIONAL_ID_TYPE_FHN
    subject = _resources(render_note(event, CONTEXT))[0]["subject"]
    assert subject["identifier"]["system"] == FHN_SYSTEM


def test_a_dispense_is_a_medication_dispense_coded_by_its_event_code() -> None:
    (dispense,) = _resources(_note("medication_dispense"))
    assert dispense["resourceType"] == "MedicationDispense"
    assert dispense["status"] == "completed"
    assert _coding(dispense["type"]) == (
        DISPENSE_EVENTS,
        "1.1",
        "medisin utlevert uassistert",
    )
    assert dispense["medicationCodeableConcept"] == {"text": "Morgendose"}
    assert dispense["whenPrepared"] == "2026-11-26T09:00:00+01:00"
    assert dispense["whenHandedOver"] == "2026-11-26T09:03:00+01:00"


def test_a_dispense_names_device_and_vendor_as_performers() -> None:
    (dispense,) = _resources(_note("medication_dispense"))
    assert [p["actor"] for p in dispense["performer"]] == [
        {
            "type": "Device",
            "identifier": {"system": DEVICE_SYSTEM, "value": "DISP-00042"},
            "display": "Medisindispenser",
        },
        {
            "type": "Organization",
            "identifier": {"system": ORGANIZATION_NUMBER, "value": "912340007"},
            "display": "Dosetta AS",
        },
    ]


def test_a_dispenser_alert_is_a_detected_issue_coded_by_its_alert_code() -> None:
    (issue,) = _resources(_note("dispenser_alert"))
    assert issue["resourceType"] == "DetectedIssue"
    assert issue["status"] == "final"
    assert _coding(issue["code"]) == (ALERT_CODES, "1.1", "Ikke utlevert")
    assert issue["identifiedDateTime"] == "2026-11-26T09:00:00+01:00"
    assert issue["author"]["identifier"] == {"system": DEVICE_SYSTEM, "value": "DISP-00042"}


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (common_pb2.SEVERITY_NORMAL, "low"),
        (common_pb2.SEVERITY_MODERATE, "moderate"),
        (common_pb2.SEVERITY_SERIOUS, "high"),
        (common_pb2.SEVERITY_CRITICAL, "high"),
        (common_pb2.SEVERITY_NOT_REPORTED, None),
    ],
)
def test_a_dispenser_alert_maps_the_event_severity(
    severity: common_pb2.Severity.ValueType, expected: str | None
) -> None:
    event = sample_event("dispenser_alert")
    event.severity = severity
    (issue,) = _resources(render_note(event, CONTEXT))
    assert issue.get("severity") == expected


def test_a_dispenser_alert_carries_the_vendor_text_as_detail() -> None:
    event = sample_event("dispenser_alert")
    event.dispenser_alert.text = "Bruker var ikke hjemme."
    (issue,) = _resources(render_note(event, CONTEXT))
    assert issue["detail"] == "Bruker var ikke hjemme."


def test_a_supervision_is_a_virtual_encounter_with_mode_and_reason() -> None:
    encounter = _resources(_note("supervision"))[0]
    assert encounter["resourceType"] == "Encounter"
    assert encounter["status"] == "finished"
    assert encounter["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert encounter["class"]["code"] == "VR"
    assert [_coding(t) for t in encounter["type"]] == [
        (ENCOUNTER_MODES, "0", "bildetilsyn anonymisert")
    ]
    assert [_coding(r) for r in encounter["reasonCode"]] == [
        (ENCOUNTER_REASONS, "1", "planlagt tilsyn")
    ]
    assert encounter["period"] == {
        "start": "2026-11-26T09:00:00+01:00",
        "end": "2026-11-26T09:01:00+01:00",
    }
    assert encounter["location"] == [{"location": {"display": "Soverom"}}]
    assert encounter["serviceProvider"]["identifier"] == {
        "system": ORGANIZATION_NUMBER,
        "value": "912340007",
    }


def test_each_supervision_observation_refers_to_the_encounter_by_full_url() -> None:
    event = sample_event("supervision")
    event.supervision.observations[0].text = "Rolig."
    entries = render_note(event, CONTEXT)["entry"]
    encounter_url, observation = entries[0]["fullUrl"], entries[1]["resource"]
    assert observation["resourceType"] == "Observation"
    assert observation["encounter"] == {"reference": encounter_url}
    assert _coding(observation["code"]) == (ALERT_CODES, "4.20", "Lagt seg seng")
    assert observation["effectiveDateTime"] == "2026-11-26T09:00:00+01:00"
    assert observation["note"] == [{"text": "Rolig."}]
    assert observation["device"]["identifier"] == {"system": DEVICE_SYSTEM, "value": "DISP-00042"}


def test_a_measurement_is_a_loinc_observation_with_a_ucum_quantity() -> None:
    (observation,) = _resources(_note("home_measurement"))
    assert observation["resourceType"] == "Observation"
    assert observation["status"] == "final"
    assert _coding(observation["code"]) == ("http://loinc.org", "8867-4", "Heart rate")
    assert observation["valueQuantity"] == {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert observation["effectiveDateTime"] == "2026-11-26T09:00:00+01:00"
    assert observation["device"]["identifier"] == {"system": DEVICE_SYSTEM, "value": "DISP-00042"}
    assert [p["identifier"]["value"] for p in observation["performer"]] == ["912340007"]


def test_the_dispenser_alert_text() -> None:
    assert narrative(sample_event("dispenser_alert"), CONTEXT) == (
        "Medisin ikke utlevert til planlagt tid 09:00. "
        "Dispenser: Medisindispenser (DISP-00042). Alvorlighetsgrad: Alvorlig."
    )


def test_the_measurement_text() -> None:
    assert narrative(sample_event("home_measurement"), CONTEXT) == (
        "Måling: Heart rate 72 /min kl. 09:00. Måler: Blodtrykksmåler (DISP-00042)."
    )


def test_the_dispense_text() -> None:
    assert narrative(sample_event("medication_dispense"), CONTEXT) == (
        "Medisin utlevert uassistert kl. 09:03 (planlagt 09:00): Morgendose. "
        "Dispenser: Medisindispenser (DISP-00042)."
    )


def test_the_supervision_text() -> None:
    assert narrative(sample_event("supervision"), CONTEXT) == (
        "Planlagt kameratilsyn (bildetilsyn anonymisert) 26.11.2026 kl. 09:00\u201309:01, "
        "Soverom. Observert: Lagt seg seng (09:00). Ligger i sengen, puster rolig."
    )


def test_the_note_text_is_the_main_resource_narrative() -> None:
    for kind in RENDERED_KINDS:
        main = _resources(_note(kind))[0]
        text = narrative(sample_event(kind), CONTEXT)
        assert main["text"] == {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>',
        }


def test_the_narrative_escapes_xhtml() -> None:
    event = sample_event("medication_dispense")
    event.medication_dispense.medication_text = "<b>Morgen & kveld</b>"
    (dispense,) = _resources(render_note(event, CONTEXT))
    assert "&lt;b&gt;Morgen &amp; kveld&lt;/b&gt;" in dispense["text"]["div"]
    Bundle.model_validate(render_note(event, CONTEXT))


def test_times_are_norwegian_summer_time() -> None:
    event = sample_event("home_measurement", at=datetime(2026, 7, 1, 6, 30, tzinfo=UTC))
    assert "kl. 08:30." in narrative(event, CONTEXT)


def test_a_planned_time_on_another_day_shows_its_date() -> None:
    event = sample_event("medication_dispense")
    event.medication_dispense.event_code = "2.1"
    event.medication_dispense.planned_time.CopyFrom(
        timestamp(datetime(2026, 11, 28, 7, 0, tzinfo=UTC))
    )
    assert narrative(event, CONTEXT).startswith(
        "Forhåndsutmating av medisin uten assistanse kl. 09:03 (planlagt 28.11.2026 08:00): "
    )


def test_a_technical_alert_is_named_by_its_group_and_display() -> None:
    event = sample_event("dispenser_alert")
    event.dispenser_alert.alert_code = "1.17"
    event.dispenser_alert.ClearField("planned_time")
    assert narrative(event, CONTEXT).startswith("Teknisk varsel: Batteri lavt. Dispenser: ")


def test_the_severity_is_left_out_when_not_reported() -> None:
    event = sample_event("home_measurement")
    event.severity = common_pb2.SEVERITY_NOT_REPORTED
    assert "Alvorlighetsgrad" not in narrative(event, CONTEXT)


def test_a_decimal_value_is_written_with_a_comma() -> None:
    event = sample_event("home_measurement")
    event.home_measurement.loinc_code, event.home_measurement.display = "8310-5", "Body temp"
    event.home_measurement.value, event.home_measurement.unit = 37.5, "Cel"
    assert narrative(event, CONTEXT).startswith("Måling: Body temp 37,5 °C kl. 09:00.")
    (observation,) = _resources(render_note(event, CONTEXT))
    assert observation["valueQuantity"]["code"] == "Cel"


def test_a_vendor_without_a_name_is_shown_by_its_organisation_number() -> None:
    nameless = NoteContext(CONTEXT.entry_id, "912340007", "", CONTEXT.vendor_system)
    (observation,) = _resources(render_note(sample_event("home_measurement"), nameless))
    assert observation["performer"][0]["display"] == "912340007"
