"""The seed patients as FHIR R4 resources, each checked by its `fhir.resources.R4B` model.

A patient is a `Patient` (name with the middle-name extension, the national id, phone, address
with the access-hint, door-lock and zone extensions, the household extension, the GP), its next
of kin (`RelatedPerson`, relationship `C`), services (`EpisodeOfCare`), today's visit plan
(`CarePlan`, category 3, activities at today's times in Europe/Oslo) and critical information
(`AllergyIntolerance`, `Flag`). GPs are `Practitioner`s. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from fhir.resources.R4B import get_fhir_model_class

from vkp_epj_sim import codes
from vkp_epj_sim.seed import (
    GeneralPractitioner,
    SeedPatient,
    sandbox_patients,
    sandbox_practitioners,
)
from vkp_lib.sandbox import SANDBOX

OSLO = ZoneInfo("Europe/Oslo")
Json = dict[str, Any]


def checked(resource: Json) -> Json:
    """The resource as its R4B model reads and writes it; raises when it is not valid."""
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    dumped: Json = model.model_dump(mode="json")
    return dumped


def _phone(value: str) -> list[Json]:
    return [{"system": "phone", "value": value}]


def _organization(municipality: str) -> Json:
    place = next(m for m in SANDBOX.municipalities if m.municipality_number == municipality)
    return {
        "identifier": {
            "system": codes.ORGANIZATION_NUMBER_SYSTEM,
            "value": place.organization_number,
        },
        "display": f"{place.display_name}, hjemmetjenesten",
    }


def practitioner(gp: GeneralPractitioner) -> Json:
    return checked(
        {
            "resourceType": "Practitioner",
            "id": gp.id,
            "identifier": [{"system": codes.HPR_SYSTEM, "value": gp.hpr_number}],
            "active": True,
            "name": [{"family": gp.family, "given": [gp.given], "prefix": ["Fastlege"]}],
            "telecom": _phone(gp.phone),
        }
    )


def patient(p: SeedPatient) -> Json:
    name: Json = {"family": p.family, "given": [p.given]}
    if p.middle:
        name["extension"] = [{"url": codes.MIDDLE_NAME_URL, "valueString": p.middle}]
    address_extensions = [
        {"url": codes.ACCESS_HINT_URL, "valueString": p.address.access_hint},
        {"url": codes.ZONE_URL, "valueString": p.address.zone},
    ]
    if p.address.door_lock:
        address_extensions.append({"url": codes.DOOR_LOCK_URL, "valueString": p.address.door_lock})
    return checked(
        {
            "resourceType": "Patient",
            "id": p.id,
            "extension": [{"url": codes.HOUSEHOLD_URL, "valueString": p.household}],
            "identifier": [{"system": p.identifier_system, "value": p.national_id}],
            "active": True,
            "name": [name],
            "telecom": _phone(p.phone),
            "gender": p.gender,
            "birthDate": p.birth_date.isoformat(),
            "address": [
                {
                    "extension": address_extensions,
                    "use": "home",
                    "line": [p.address.line],
                    "postalCode": p.address.postal_code,
                    "city": p.address.city,
                    "district": p.address.district,
                    "country": "NO",
                }
            ],
            "generalPractitioner": [{"reference": f"Practitioner/{p.gp.id}", "display": p.gp.name}],
        }
    )


def _related_people(p: SeedPatient) -> Iterator[Json]:
    for relative in p.next_of_kin:
        yield checked(
            {
                "resourceType": "RelatedPerson",
                "id": relative.id,
                "active": True,
                "patient": {"reference": p.reference},
                "relationship": [
                    {
                        "coding": [
                            {
                                "system": codes.RELATIONSHIP_SYSTEM,
                                "code": codes.EMERGENCY_CONTACT_CODE,
                                "display": "Emergency Contact",
                            }
                        ]
                    },
                    {
                        "coding": [
                            {
                                "system": codes.ROLE_CODE_SYSTEM,
                                "code": relative.relationship,
                                "display": relative.relationship_display,
                            }
                        ]
                    },
                ],
                "name": [{"family": relative.family, "given": [relative.given]}],
                "telecom": _phone(relative.phone),
            }
        )


def _episodes(p: SeedPatient) -> Iterator[Json]:
    for service in p.services:
        period = {"start": service.start.isoformat()}
        if service.end:
            period["end"] = service.end.isoformat()
        yield checked(
            {
                "resourceType": "EpisodeOfCare",
                "id": service.id,
                "status": service.status,
                "type": [
                    {
                        "coding": [
                            {
                                "system": codes.SERVICE_TYPE_SYSTEM,
                                "code": service.type_code,
                                "display": codes.SERVICE_TYPES[service.type_code],
                            }
                        ]
                    }
                ],
                "patient": {"reference": p.reference},
                "managingOrganization": _organization(p.municipality),
                "period": period,
            }
        )


def _visit_plan(p: SeedPatient, today: dt.date) -> Iterator[Json]:
    if p.care_plan_id is None:
        return

    def at(time: dt.time) -> str:
        return dt.datetime.combine(today, time, OSLO).isoformat()

    yield checked(
        {
            "resourceType": "CarePlan",
            "id": p.care_plan_id,
            "status": "active",
            "intent": "plan",
            "category": [
                {
                    "coding": [
                        {
                            "system": codes.CAREPLAN_CATEGORY_SYSTEM,
                            "code": codes.VISIT_PLAN_CODE,
                            "display": "Besøksplan",
                        }
                    ]
                }
            ],
            "title": "Besøksplan hjemmetjenesten",
            "subject": {"reference": p.reference},
            "period": {"start": today.isoformat(), "end": today.isoformat()},
            "activity": [
                {
                    "detail": {
                        "status": "scheduled",
                        "description": visit.description,
                        "scheduledPeriod": {"start": at(visit.start), "end": at(visit.end)},
                    }
                }
                for visit in p.visits
            ],
        }
    )


def _critical(p: SeedPatient) -> Iterator[Json]:
    for allergy in p.allergies:
        yield checked(
            {
                "resourceType": "AllergyIntolerance",
                "id": allergy.id,
                "clinicalStatus": {
                    "coding": [{"system": codes.ALLERGY_CLINICAL_SYSTEM, "code": "active"}]
                },
                "verificationStatus": {
                    "coding": [{"system": codes.ALLERGY_VERIFICATION_SYSTEM, "code": "confirmed"}]
                },
                "criticality": allergy.criticality,
                "code": {"text": allergy.substance},
                "patient": {"reference": p.reference},
                "reaction": [{"manifestation": [{"text": allergy.reaction}]}],
            }
        )
    for warning in p.warnings:
        yield checked(
            {
                "resourceType": "Flag",
                "id": warning.id,
                "status": "active",
                "category": [
                    {"coding": [{"system": codes.FLAG_CATEGORY_SYSTEM, "code": warning.category}]}
                ],
                "code": {"text": warning.text},
                "subject": {"reference": p.reference},
            }
        )


def patient_records(p: SeedPatient, today: dt.date) -> list[Json]:
    """The patient's resources: Patient, RelatedPerson, EpisodeOfCare, CarePlan,
    AllergyIntolerance, Flag."""
    return [
        patient(p),
        *_related_people(p),
        *_episodes(p),
        *_visit_plan(p, today),
        *_critical(p),
    ]


def sandbox_records(seed: int, today: dt.date) -> list[tuple[str, Json]]:
    """Every seeded resource, with its municipality's kommunenummer: the GPs, then each
    patient's records."""
    records = [(gp.municipality, practitioner(gp)) for gp in sandbox_practitioners(seed)]
    for p in sandbox_patients(seed):
        records += [(p.municipality, r) for r in patient_records(p, today)]
    return records


def today_in_norway() -> dt.date:
    return dt.datetime.now(OSLO).date()
