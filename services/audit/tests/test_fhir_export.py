"""The FHIR export of audit records: AuditEvents after IHE BALP, in a Bundle (pure, no server).

The golden file is the expected Bundle of RECORDS. After a deliberate change of the export, check
the new output by eye and rewrite it with
    VKP_UPDATE_GOLDEN=1 .venv/bin/pytest services/audit/tests/test_fhir_export.py
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent, AuditEventAgent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.reference import Reference

from vkp_audit.domain.model import (
    Actor,
    AuditAction,
    AuditOutcome,
    AuditRecord,
    Patient,
)
from vkp_audit.fhir import audit_bundle, audit_event
from vkp_lib.national_id import NationalIdKind, synthetic_national_id
from vkp_lib.testing.data import TEST_PEOPLE

GOLDEN = Path(__file__).parent / "golden" / "audit_bundle.json"

MUNICIPALITY = "964120005"
FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SERVICE_CODE = "urn:vkp:service-code"
CLIENT_ID = "urn:ietf:params:oauth:client-id"
ORGANIZATION_NUMBER = "urn:oid:2.16.578.1.12.4.1.4.101"
D_NUMBER = synthetic_national_id(random.Random(2026), kind=NationalIdKind.DNR)  # noqa: S311 - synthetic data, not secrecy
AT = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

READ_DURING_ALARM = AuditRecord(
    record_id="6f1c2a9e-4b7d-4c1e-9a3f-0d2e5b8c7a11",
    actor=Actor(
        client_id="alarm-central",
        organization_number="912340007",
        vendor_system="vendors/912340007/systems/alarm-central",
    ),
    municipality=MUNICIPALITY,
    patients=(Patient(TEST_PEOPLE[0].national_id),),
    action=AuditAction.READ,
    resource="/vkp.lookup.v1.LookupService/GetAlarmContext",
    outcome=AuditOutcome.ALLOWED,
    occurred_time=AT,
    service_code="TA",
    alarm_id="alarm-2026-0001",
    stale_data=True,
    request_id="req-0001",
    access_basis="OPEN_ALARM EpisodeOfCare/eoc-0001",
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    sequence=1,
    record_time=AT + timedelta(milliseconds=250),
)
DENIED_QUERY = AuditRecord(
    record_id="9b3e7d21-8c4a-4f6b-b1d2-3e4f5a6b7c22",
    actor=Actor(client_id="dosetta-dispenser", organization_number="934560000"),
    municipality=MUNICIPALITY,
    patients=(
        Patient(TEST_PEOPLE[1].national_id, NationalIdKind.FNR),
        Patient(D_NUMBER),
    ),
    action=AuditAction.QUERY,
    resource="/vkp.lookup.v1.LookupService/ListServiceNeeds",
    outcome=AuditOutcome.DENIED,
    occurred_time=AT + timedelta(minutes=5),
    service_code="MD",
    outcome_reason="NOT_ALLOWED",
    request_id="req-0002",
)
FAILED_CREATE = AuditRecord(
    record_id="c4d5e6f7-1a2b-4c3d-8e9f-0a1b2c3d4e33",
    actor=Actor(client_id="care-app", person_id="user-4711"),
    municipality=MUNICIPALITY,
    patients=(Patient(TEST_PEOPLE[2].national_id),),
    action=AuditAction.CREATE,
    resource="/vkp.journaling.v1.JournalingService/DeliverNote",
    outcome=AuditOutcome.FAILED,
    occurred_time=AT + timedelta(minutes=10),
    outcome_reason="EPJ_UNAVAILABLE",
    sequence=3,
    record_time=AT + timedelta(minutes=10, seconds=1),
)
RECORDS = [READ_DURING_ALARM, DENIED_QUERY, FAILED_CREATE]


def events() -> list[AuditEvent]:
    bundle = Bundle.model_validate_json(audit_bundle(RECORDS))
    found = [entry.resource for entry in bundle.entry or []]
    assert all(isinstance(e, AuditEvent) for e in found)
    return [e for e in found if isinstance(e, AuditEvent)]


def requestor(event: AuditEvent) -> AuditEventAgent:
    (agent,) = [a for a in event.agent if a.requestor]
    return agent


def codes(concepts: CodeableConcept | list[CodeableConcept] | None) -> list[tuple[Any, Any]]:
    listed = concepts if isinstance(concepts, list) else [concepts] if concepts else []
    return [(c.system, c.code) for concept in listed for c in concept.coding or []]


def code(coding: Coding | None) -> tuple[Any, Any]:
    assert coding is not None
    return coding.system, coding.code


def identifier(reference: Reference | None) -> tuple[Any, Any]:
    assert reference is not None
    assert reference.identifier is not None
    return reference.identifier.system, reference.identifier.value


def test_the_bundle_of_the_fixed_records_matches_the_golden_file() -> None:
    produced: dict[str, Any] = json.loads(audit_bundle(RECORDS))
    if os.environ.get("VKP_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(produced, indent=2, ensure_ascii=False) + "\n")
    assert produced == json.loads(GOLDEN.read_text())


def test_the_same_records_give_the_same_bytes() -> None:
    assert audit_bundle(RECORDS) == audit_bundle(list(RECORDS))


def test_the_bundle_parses_as_an_r4_collection_of_one_audit_event_per_record() -> None:
    bundle = Bundle.model_validate_json(audit_bundle(RECORDS))
    assert bundle.type == "collection"
    entries = bundle.entry or []
    assert [e.fullUrl for e in entries] == [f"urn:uuid:{r.record_id}" for r in RECORDS]
    assert [type(e.resource) for e in entries] == [AuditEvent] * 3
    assert [e.resource.id for e in entries if e.resource] == [r.record_id for r in RECORDS]


def test_an_audit_event_is_the_resource_of_its_bundle_entry() -> None:
    bundle = json.loads(audit_bundle([DENIED_QUERY]))
    assert bundle["entry"][0]["resource"] == audit_event(DENIED_QUERY)


def test_no_records_make_an_empty_collection() -> None:
    assert json.loads(audit_bundle([])) == {"resourceType": "Bundle", "type": "collection"}


def test_each_action_is_a_restful_interaction_with_its_subtype_and_action_code() -> None:
    read, query, create = events()
    rest = ("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest")
    assert [code(e.type) for e in (read, query, create)] == [rest] * 3
    interaction = "http://hl7.org/fhir/restful-interaction"
    assert [[code(c) for c in e.subtype or []] for e in (read, query, create)] == [
        [(interaction, "read")],
        [(interaction, "search-type")],
        [(interaction, "create")],
    ]
    assert [e.action for e in (read, query, create)] == ["R", "E", "C"]


def test_outcomes_are_success_minor_and_serious_failure_with_the_reason() -> None:
    read, query, create = events()
    assert [(e.outcome, e.outcomeDesc) for e in (read, query, create)] == [
        ("0", None),
        ("4", "NOT_ALLOWED"),
        ("8", "EPJ_UNAVAILABLE"),
    ]


def test_recorded_is_the_record_time_else_the_occurred_time_and_the_period_is_the_moment() -> None:
    read, query, _ = events()
    assert read.recorded == AT + timedelta(milliseconds=250)
    assert query.recorded == DENIED_QUERY.occurred_time
    assert read.period is not None
    assert read.period.start == read.period.end == AT


def test_times_in_another_zone_are_written_in_utc() -> None:
    oslo = timezone(timedelta(hours=1))
    record = replace(DENIED_QUERY, occurred_time=datetime(2026, 11, 26, 9, 5, tzinfo=oslo))
    event = audit_event(record)
    assert event["recorded"] == "2026-11-26T08:05:00Z"
    assert event["period"] == {"start": "2026-11-26T08:05:00Z", "end": "2026-11-26T08:05:00Z"}


def test_the_client_requests_with_its_client_id_and_vendor_system_and_a_treatment_purpose() -> None:
    read, query, _ = events()
    client = requestor(read)
    assert codes(client.type) == [("http://dicom.nema.org/resources/ontology/DCM", "110153")]
    assert identifier(client.who) == (CLIENT_ID, "alarm-central")
    assert client.who is not None
    assert client.who.display == READ_DURING_ALARM.actor.vendor_system
    assert codes(client.purposeOfUse) == [(ACT_REASON, "ETREAT"), (SERVICE_CODE, "TA")]

    other = requestor(query)
    assert identifier(other.who) == (CLIENT_ID, "dosetta-dispenser")
    assert other.who is not None
    assert other.who.display is None
    assert codes(other.purposeOfUse) == [(ACT_REASON, "TREAT"), (SERVICE_CODE, "MD")]


def test_the_organisation_of_the_client_is_a_second_agent_that_does_not_request() -> None:
    read, query, create = events()

    def organisations(event: AuditEvent) -> list[AuditEventAgent]:
        return [a for a in event.agent if identifier(a.who)[0] == ORGANIZATION_NUMBER]

    for event, number in ((read, "912340007"), (query, "934560000")):
        (organisation,) = organisations(event)
        assert organisation.requestor is False
        assert identifier(organisation.who) == (ORGANIZATION_NUMBER, number)
    assert organisations(create) == []


def test_a_named_person_is_the_requestor_and_the_client_then_is_not() -> None:
    *_, create = events()
    user = requestor(create)
    assert codes(user.type) == [
        ("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser")
    ]
    assert identifier(user.who) == (None, "user-4711")
    assert codes(user.purposeOfUse) == [(ACT_REASON, "TREAT")]
    (client,) = [a for a in create.agent if a is not user]
    assert client.requestor is False
    assert client.purposeOfUse is None
    assert identifier(client.who) == (CLIENT_ID, "care-app")


def test_each_patient_is_a_person_entity_with_the_system_of_its_national_id() -> None:
    read, query, _ = events()
    patient = ("http://terminology.hl7.org/CodeSystem/object-role", "1")
    patients = [e for e in [*(read.entity or []), *(query.entity or [])] if code(e.role) == patient]
    assert [code(e.type) for e in patients] == [
        ("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1")
    ] * 3
    assert [identifier(e.what) for e in patients] == [
        (FNR_SYSTEM, TEST_PEOPLE[0].national_id),  # first digit 3: a day, not a D-number
        (FNR_SYSTEM, TEST_PEOPLE[1].national_id),  # stated
        (DNR_SYSTEM, D_NUMBER),  # first digit 4-7, derived
    ]


def test_the_resource_is_a_domain_resource_entity_with_the_call_details() -> None:
    read, query, create = events()
    resources = [(e.entity or [])[-1] for e in (read, query, create)]
    for entity, record in zip(resources, RECORDS, strict=True):
        assert entity.what is not None
        assert entity.what.display == record.resource
        assert (code(entity.type)[1], code(entity.role)[1]) == ("2", "4")
    assert [(d.type, d.valueString) for d in resources[0].detail or []] == [
        ("request-id", "req-0001"),
        ("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("alarm-id", "alarm-2026-0001"),
        ("stale-data", "true"),
        ("access-basis", "OPEN_ALARM EpisodeOfCare/eoc-0001"),
    ]
    assert [(d.type, d.valueString) for d in resources[1].detail or []] == [
        ("request-id", "req-0002")
    ]
    assert resources[2].detail is None


def test_the_source_is_the_observer_an_application_server() -> None:
    event = audit_event(FAILED_CREATE, observer="vkp-audit-2")
    assert event["source"]["observer"] == {"display": "vkp-audit-2"}
    assert [(c["system"], c["code"]) for c in event["source"]["type"]] == [
        ("http://terminology.hl7.org/CodeSystem/security-source-type", "4")
    ]
