"""Audit records as FHIR R4 AuditEvents, after IHE Basic Audit Log Patterns (BALP).

Each record becomes one AuditEvent: a RESTful interaction (BALP PatientRead, Query or Create by
the record's action) by the calling client, its organisation and the person acting, about the
patients the record names and the hub resource that was called. A Bundle (type collection) holds
the events of an export. The `fhir.resources.R4B` models build and validate every resource (R4B's
AuditEvent and Bundle are R4's). The JSON is the same for the same records: elements in the
order of the specification, no generated ids or timestamps.

Pure: no I/O, gRPC or database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.auditevent import (
    AuditEvent,
    AuditEventAgent,
    AuditEventEntity,
    AuditEventEntityDetail,
    AuditEventSource,
)
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference

from vkp_audit.domain.model import (
    Actor,
    AuditAction,
    AuditOutcome,
    AuditRecord,
    Patient,
)
from vkp_lib.national_id import IDENTIFIER_SYSTEMS, NationalIdKind

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
SECURITY_ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
CLIENT_ID_SYSTEM = "urn:ietf:params:oauth:client-id"
#: Enhetsregisteret's organisation numbers.
ORGANIZATION_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
SERVICE_CODE_SYSTEM = "urn:vkp:service-code"
#: The media type of an export.
MEDIA_TYPE = "application/fhir+json; fhirVersion=4.0"

#: BALP's subtype (restful-interaction) and the AuditEvent action code of each action.
INTERACTIONS = {
    AuditAction.READ: ("read", "R"),
    AuditAction.QUERY: ("search-type", "E"),
    AuditAction.CREATE: ("create", "C"),
}
OUTCOMES = {AuditOutcome.ALLOWED: "0", AuditOutcome.DENIED: "4", AuditOutcome.FAILED: "8"}


def _instant(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def identifier_system(patient: Patient) -> str:
    """The FHIR identifier system of a patient's national id: the stated kind, else the kind
    its first digit says (4-7 a D-number, 8-9 an FH-number, else a fødselsnummer). A kind
    without a national system (an H-number) is named by its digits too."""
    stated = IDENTIFIER_SYSTEMS.get(patient.type) if patient.type is not None else None
    if stated is not None:
        return stated
    first = patient.national_id[:1]
    if first in ("4", "5", "6", "7"):
        return IDENTIFIER_SYSTEMS[NationalIdKind.DNR]
    if first in ("8", "9"):
        return IDENTIFIER_SYSTEMS[NationalIdKind.FHN]
    return IDENTIFIER_SYSTEMS[NationalIdKind.FNR]


def _purpose_of_use(record: AuditRecord) -> list[CodeableConcept]:
    reason = (
        Coding(system=ACT_REASON, code="ETREAT", display="Emergency Treatment")
        if record.alarm_id
        else Coding(system=ACT_REASON, code="TREAT", display="treatment")
    )
    purposes = [CodeableConcept(coding=[reason])]
    if record.service_code:
        purposes.append(
            CodeableConcept(coding=[Coding(system=SERVICE_CODE_SYSTEM, code=record.service_code)])
        )
    return purposes


def _agents(record: AuditRecord) -> list[AuditEventAgent]:
    """The client; its organisation; the person acting. The person is the requestor when named,
    else the client: an AuditEvent has one initiator."""
    actor: Actor = record.actor
    purposes = _purpose_of_use(record)
    client_requests = not actor.person_id
    agents = [
        AuditEventAgent(
            type=CodeableConcept(
                coding=[Coding(system=DICOM, code="110153", display="Source Role ID")]
            ),
            who=Reference(
                identifier=Identifier(system=CLIENT_ID_SYSTEM, value=actor.client_id),
                type="Device",
                display=actor.vendor_system or None,
            ),
            requestor=client_requests,
            purposeOfUse=purposes if client_requests else None,
        )
    ]
    if actor.organization_number:
        agents.append(
            AuditEventAgent(
                who=Reference(
                    identifier=Identifier(
                        system=ORGANIZATION_NUMBER_SYSTEM, value=actor.organization_number
                    ),
                    type="Organization",
                ),
                requestor=False,
            )
        )
    if actor.person_id:
        agents.append(
            AuditEventAgent(
                type=CodeableConcept(
                    coding=[
                        Coding(system=SECURITY_ROLE_TYPE, code="humanuser", display="human user")
                    ]
                ),
                who=Reference(identifier=Identifier(value=actor.person_id)),
                requestor=True,
                purposeOfUse=purposes,
            )
        )
    return agents


def _patient_entity(patient: Patient) -> AuditEventEntity:
    return AuditEventEntity(
        what=Reference(
            identifier=Identifier(system=identifier_system(patient), value=patient.national_id),
            type="Patient",
        ),
        type=Coding(system=ENTITY_TYPE, code="1", display="Person"),
        role=Coding(system=OBJECT_ROLE, code="1", display="Patient"),
    )


def _resource_entity(record: AuditRecord) -> AuditEventEntity:
    details = [
        (name, value)
        for name, value in (
            ("request-id", record.request_id),
            ("trace-id", record.trace_id),
            ("alarm-id", record.alarm_id),
            ("stale-data", "true" if record.stale_data else ""),
            ("access-basis", record.access_basis),
        )
        if value
    ]
    return AuditEventEntity(
        what=Reference(display=record.resource),
        type=Coding(system=ENTITY_TYPE, code="2", display="System Object"),
        role=Coding(system=OBJECT_ROLE, code="4", display="Domain Resource"),
        detail=[AuditEventEntityDetail(type=name, valueString=value) for name, value in details]
        or None,
    )


def _audit_event(record: AuditRecord, observer: str) -> AuditEvent:
    subtype, action = INTERACTIONS[record.action]
    occurred = _instant(record.occurred_time)
    return AuditEvent(
        id=record.record_id,
        type=Coding(system=AUDIT_EVENT_TYPE, code="rest", display="Restful Operation"),
        subtype=[Coding(system=RESTFUL_INTERACTION, code=subtype, display=subtype)],
        action=action,
        period=Period(start=occurred, end=occurred),
        recorded=_instant(record.record_time or record.occurred_time),
        outcome=OUTCOMES[record.outcome],
        outcomeDesc=record.outcome_reason or None,
        agent=_agents(record),
        source=AuditEventSource(
            observer=Reference(display=observer),
            type=[Coding(system=SECURITY_SOURCE_TYPE, code="4", display="Application Server")],
        ),
        entity=[*(_patient_entity(p) for p in record.patients), _resource_entity(record)],
    )


def audit_event(record: AuditRecord, *, observer: str = "vkp-audit") -> dict[str, Any]:
    """One record as a FHIR R4 AuditEvent, a JSON-ready dict; `observer` names the audit source."""
    event: dict[str, Any] = _audit_event(record, observer).model_dump(mode="json")
    return event


def audit_bundle(records: Sequence[AuditRecord], *, observer: str = "vkp-audit") -> bytes:
    """The records as a FHIR R4 Bundle (type collection) of AuditEvents, in their order: JSON,
    UTF-8. Each entry's fullUrl is urn:uuid:{record_id}."""
    bundle = Bundle(
        type="collection",
        entry=[
            BundleEntry(fullUrl=f"urn:uuid:{r.record_id}", resource=_audit_event(r, observer))
            for r in records
        ]
        or None,
    )
    return bundle.model_dump_json().encode()
