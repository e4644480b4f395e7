"""An alarm segment's handling log as a note: a FHIR R4 transaction Bundle of a Composition (the
timeline), a DetectedIssue (the alert) and a Location, with a Norwegian narrative.

The golden file is the Bundle of the sample alarm (vkp_lib.testing.events.sample_alarm) with
CONTEXT. After a deliberate change of the rendering, check the new output by eye and rewrite it
with
    VKP_UPDATE_GOLDEN=1 .venv/bin/pytest services/journaling/tests/test_handling_log.py
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.composition import Composition

from vkp.common.v1 import common_pb2, event_pb2
from vkp_journaling.domain.alarm import ALARM_LOG, pack_steps
from vkp_journaling.render import NOTE_IDENTIFIER_SYSTEM, NOTE_NAMESPACE, NoteContext, NotRenderable
from vkp_journaling.render.handling_log import (
    handling_log_text,
    render_entry_note,
    render_handling_log,
)
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.events import sample_alarm, sample_event

GOLDEN = Path(__file__).parent / "golden" / "note_alarm_handling_log.json"
CONTEXT = NoteContext(
    entry_id="0d6c7a52-3c1e-5b8e-a1f0-6b2f8e9d4c31",
    vendor_organization_number="912340007",
    vendor_name="Trygg Respons AS",
    vendor_system="vendors/912340007/systems/alarm-centre",
)
EVENT_CODES = "http://ehelse.no/fhir/CodeSystem/vkp-composition-event-v090"


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle["entry"]]


def _shuffled(steps: list[event_pb2.Event]) -> list[event_pb2.Event]:
    mixed = list(steps)
    random.Random(7).shuffle(mixed)  # noqa: S311 - an order, not secrecy
    return mixed


def test_the_handling_log_matches_its_golden_file() -> None:
    produced = render_handling_log(sample_alarm(), CONTEXT, 1)
    if os.environ.get("VKP_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(produced, indent=2, ensure_ascii=False) + "\n")
    assert produced == json.loads(GOLDEN.read_text())


def test_steps_in_any_order_give_the_same_log() -> None:
    assert render_handling_log(_shuffled(sample_alarm()), CONTEXT, 1) == render_handling_log(
        sample_alarm(), CONTEXT, 1
    )


@pytest.mark.parametrize("gps", [True, False], ids=["gps", "no-position"])
def test_the_log_is_exactly_what_the_r4b_models_make_of_it(gps: bool) -> None:
    note = render_handling_log(sample_alarm(gps=gps), CONTEXT, 2)
    remade = Bundle.model_validate(note).model_dump(mode="json", exclude_none=True)
    assert json.loads(json.dumps(note)) == remade


def test_a_sparse_open_log_is_exactly_what_the_r4b_models_make_of_it() -> None:
    step = sample_event("alarm_step")
    step.alarm_step.triage_code = ""
    step.alarm_step.responder = ""
    step.alarm_step.text = ""
    step.ClearField("severity")
    note = render_handling_log([step], CONTEXT, 1)
    remade = Bundle.model_validate(note).model_dump(mode="json", exclude_none=True)
    assert json.loads(json.dumps(note)) == remade
    assert [r["resourceType"] for r in _resources(note)] == ["Composition", "DetectedIssue"]


def test_the_composition_is_an_r4_handling_log_with_the_timeline_in_time_order() -> None:
    steps = sample_alarm()
    composition = _resources(render_handling_log(_shuffled(steps), CONTEXT, 1))[0]
    Composition.model_validate(composition)  # an R4 Composition
    assert composition["type"]["coding"][0]["system"] == "http://loinc.org"
    assert composition["type"]["coding"][0]["code"] == "34133-9"
    (category,) = composition["category"]
    assert (category["coding"][0]["code"], category["coding"][0]["display"]) == (
        "1",
        "Trygghet og mestring",
    )
    codes = [e["code"][0]["coding"][0] for e in composition["event"]]
    assert [c["code"] for c in codes] == [s.alarm_step.timeline_code for s in steps]
    assert all(c["system"] == EVENT_CODES for c in codes)
    starts = [datetime.fromisoformat(e["period"]["start"]) for e in composition["event"]]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(steps)
    sections = [s["code"]["coding"][0]["code"] for s in composition["section"]]
    assert sections == ["1.2", "1.1", "2"]


def test_the_alert_is_a_detected_issue_with_severity_and_triage() -> None:
    issue = _resources(render_handling_log(sample_alarm(), CONTEXT, 1))[1]
    assert issue["code"]["coding"][0]["code"] == "3"
    assert issue["severity"] == "high"  # the highest a step reported: serious
    (evidence,) = issue["evidence"]
    assert evidence["code"][0]["coding"][0]["code"] == "Y"


def test_a_gps_alarm_has_its_location() -> None:
    location = _resources(render_handling_log(sample_alarm(), CONTEXT, 1))[2]
    assert location["resourceType"] == "Location"
    assert location["position"] == {"longitude": 10.75012, "latitude": 59.91234}
    assert location["description"] == "Storgata 1, 2. etasje"


def test_every_entry_is_a_conditional_create_on_the_log_entrys_id() -> None:
    entries = render_handling_log(sample_alarm(), CONTEXT, 1)["entry"]
    assert len(entries) == 3
    for n, entry in enumerate(entries, start=1):
        key = f"{CONTEXT.entry_id}/{n}"
        identifier = entry["resource"]["identifier"]
        assert (identifier if n == 1 else identifier[0]) == {
            "system": NOTE_IDENTIFIER_SYSTEM,
            "value": key,
        }
        assert entry["request"]["ifNoneExist"] == f"identifier={NOTE_IDENTIFIER_SYSTEM}|{key}"
        assert entry["fullUrl"] == f"urn:uuid:{uuid.uuid5(NOTE_NAMESPACE, key)}"


def test_the_narrative_is_norwegian_in_local_time_without_the_patient() -> None:
    lines = handling_log_text(sample_alarm(), CONTEXT, 1)
    assert lines[0] == "Trygghetsalarm 26.11.2026 kl. 22:40\u201322:52. Alarmen er avsluttet."
    assert "Forløp:" in lines
    assert lines[-1] == (
        "22:52 Tiltak (Hjemmetjeneste sone 2): Bruker funnet på gulvet, ikke skadet. "
        "Hjulpet i seng."
    )
    assert all(TEST_PEOPLE[0].national_id not in line for line in lines)


def test_an_open_segment_says_so_and_which_it_is() -> None:
    open_steps = sample_alarm()[:2]
    first = handling_log_text(open_steps, CONTEXT, 1)[0]
    assert first.endswith(
        "Alarmen var ikke avsluttet da loggen ble journalført. Del 1 av håndteringsloggen."
    )
    title = _resources(render_handling_log(sample_alarm()[2:], CONTEXT, 2))[0]["title"]
    assert title == "Håndteringslogg: Trygghetsalarm (del 2)"


def test_a_stored_log_entry_renders_as_its_handling_log() -> None:
    steps = sample_alarm()
    payload = pack_steps(3, [s.SerializeToString(deterministic=True) for s in steps])
    assert render_entry_note(ALARM_LOG, payload, CONTEXT) == render_handling_log(steps, CONTEXT, 3)


def test_a_damaged_payload_or_another_kind_of_step_makes_no_log() -> None:
    with pytest.raises(NotRenderable):
        render_entry_note(ALARM_LOG, b"\x00\x00", CONTEXT)
    with pytest.raises(NotRenderable):
        render_handling_log([sample_event("home_measurement")], CONTEXT, 1)
    with pytest.raises(NotRenderable):
        render_handling_log([], CONTEXT, 1)


def test_a_door_lock_alarm_is_named_so() -> None:
    steps = sample_alarm(gps=False)
    for step in steps:
        step.alarm_step.alert_code = "6"
        step.severity = common_pb2.SEVERITY_MODERATE
    lines = handling_log_text(steps, CONTEXT, 1)
    assert lines[0].startswith("Elektronisk dørlås 26.11.2026")
    assert "Alvorlighetsgrad: Moderat." in lines[1]
