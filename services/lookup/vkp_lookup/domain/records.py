"""The EPJ's FHIR R4 resources (JSON, as the EPJ sends them) read into lookup's types.

Lenient, as a reader of another system's records should be: an element that is missing or of
another shape is left empty, never an error. The extensions the Norwegian profiles have no
element for (access hint, door lock, zone, household) are read by their urls, from
`vkp_lib.epj_profile` (the EPJ simulator writes by the same). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from vkp_lib.epj_profile import (
    ACCESS_HINT_URL,
    CAREPLAN_CATEGORY_SYSTEM,
    DOOR_LOCK_URL,
    HOUSEHOLD_URL,
    MIDDLE_NAME_URL,
    RELATIONSHIP_SYSTEM,
    VISIT_PLAN_CODE,
    ZONE_URL,
)
from vkp_lookup.domain.model import (
    Address,
    Coding,
    CriticalInformation,
    CriticalKind,
    GeneralPractitioner,
    Name,
    NextOfKin,
    Patient,
    Visit,
)
from vkp_lookup.domain.need import Episode

Json = dict[str, Any]
OSLO = ZoneInfo("Europe/Oslo")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _extension(element: Json, url: str) -> str:
    for extension in _list(element.get("extension")):
        if _dict(extension).get("url") == url:
            return _str(extension.get("valueString"))
    return ""


def _date(value: Any) -> date | None:
    text = _str(value)
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _datetime(value: Any) -> datetime | None:
    text = _str(value)
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if len(text) <= 10:  # a date: its start in Norway
        return datetime.combine(found.date(), time(), OSLO)
    return found if found.tzinfo is not None else found.replace(tzinfo=OSLO)


def _reference_id(reference: Any, resource_type: str) -> str:
    text = _str(_dict(reference).get("reference"))
    parts = text.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return ""


def _codings(concept: Any) -> list[Coding]:
    return [
        Coding(_str(c.get("system")), _str(c.get("code")), _str(c.get("display")))
        for c in map(_dict, _list(_dict(concept).get("coding")))
        if _str(c.get("code"))
    ]


def _text(concept: Any) -> str:
    concept = _dict(concept)
    if _str(concept.get("text")):
        return _str(concept["text"])
    return next((c.display for c in _codings(concept) if c.display), "")


def _name(names: Any) -> Name:
    chosen = _dict(
        next((n for n in map(_dict, _list(names)) if n.get("use") == "official"), None)
        or next(iter(_list(names)), None)
    )
    given = tuple(g for g in map(_str, _list(chosen.get("given"))) if g)
    middle = _extension(chosen, MIDDLE_NAME_URL)
    if middle:
        given = (*given, middle)
    family = _str(chosen.get("family"))
    text = _str(chosen.get("text")) or " ".join((*given, family)).strip()
    return Name(given=given, family=family, text=text)


def _phones(telecom: Any) -> tuple[str, ...]:
    return tuple(
        _str(t.get("value"))
        for t in map(_dict, _list(telecom))
        if t.get("system") in ("phone", "sms") and _str(t.get("value"))
    )


def patient(resource: Json, national_id_systems: Iterable[str]) -> Patient:
    """A Patient resource; its national id is the identifier of the first of
    `national_id_systems` it has."""
    systems = tuple(national_id_systems)
    identifiers = [
        (_str(i.get("system")), _str(i.get("value")))
        for i in map(_dict, _list(resource.get("identifier")))
    ]
    national = next(
        ((s, v) for system in systems for s, v in identifiers if s == system and v), ("", "")
    )
    addresses = [_dict(a) for a in _list(resource.get("address"))]
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    gp = next(
        (
            found
            for found in (
                _reference_id(r, "Practitioner") for r in _list(resource.get("generalPractitioner"))
            )
            if found
        ),
        "",
    )
    return Patient(
        id=_str(resource.get("id")),
        national_id=national[1],
        national_id_system=national[0],
        name=_name(resource.get("name")),
        phones=_phones(resource.get("telecom")),
        address=Address(
            lines=tuple(line for line in map(_str, _list(home.get("line"))) if line),
            postal_code=_str(home.get("postalCode")),
            city=_str(home.get("city")),
            access_hint=_extension(home, ACCESS_HINT_URL),
        ),
        door_lock_system=_extension(home, DOOR_LOCK_URL),
        zone=_extension(home, ZONE_URL),
        household=_extension(resource, HOUSEHOLD_URL),
        general_practitioner_id=gp,
    )


def episode(resource: Json) -> Episode:
    """An EpisodeOfCare: its first typed coding is its service type."""
    codings = [c for concept in _list(resource.get("type")) for c in _codings(concept)]
    first = codings[0] if codings else Coding("", "")
    period = _dict(resource.get("period"))
    return Episode(
        episode_id=_str(resource.get("id")),
        type_code=first.code,
        status=_str(resource.get("status")),
        start=_date(period.get("start")),
        end=_date(period.get("end")),
        type_system=first.system,
        type_display=first.display,
        managing_organization=_str(_dict(resource.get("managingOrganization")).get("display")),
    )


def episode_patient(resource: Json) -> str:
    """The logical id of an EpisodeOfCare's patient."""
    return _reference_id(resource.get("patient"), "Patient")


def next_of_kin(resource: Json) -> NextOfKin:
    """A RelatedPerson: the relationship as its role's display (Datter), else any text."""
    concepts = _list(resource.get("relationship"))
    role = next(
        (
            c.display or c.code
            for concept in concepts
            for c in _codings(concept)
            if c.system != RELATIONSHIP_SYSTEM
        ),
        "",
    )
    return NextOfKin(
        name=_name(resource.get("name")),
        relationship=role or next((_text(c) for c in concepts if _text(c)), ""),
        phones=_phones(resource.get("telecom")),
    )


def general_practitioner(resource: Json) -> GeneralPractitioner:
    return GeneralPractitioner(
        name=_name(resource.get("name")),
        organization="",
        phones=_phones(resource.get("telecom")),
    )


def allergy(resource: Json) -> CriticalInformation | None:
    """An AllergyIntolerance, unless it is resolved, inactive or refuted."""
    clinical = {c.code for c in _codings(resource.get("clinicalStatus"))}
    verification = {c.code for c in _codings(resource.get("verificationStatus"))}
    if clinical & {"inactive", "resolved"} or verification & {"refuted", "entered-in-error"}:
        return None
    code = resource.get("code")
    codings = _codings(code)
    reactions = [
        _text(m)
        for r in map(_dict, _list(resource.get("reaction")))
        for m in _list(r.get("manifestation"))
        if _text(m)
    ]
    text = _text(code)
    if reactions:
        text = f"{text}: {', '.join(reactions)}" if text else ", ".join(reactions)
    return CriticalInformation(
        kind=CriticalKind.ALLERGY,
        text=text,
        code=codings[0] if codings else None,
        criticality=_str(resource.get("criticality")),
    )


def warning(resource: Json) -> CriticalInformation | None:
    """A Flag, while it is active."""
    if resource.get("status") != "active":
        return None
    codings = _codings(resource.get("code"))
    return CriticalInformation(
        kind=CriticalKind.WARNING,
        text=_text(resource.get("code")),
        code=codings[0] if codings else None,
    )


def is_visit_plan(resource: Json) -> bool:
    return any(
        c.system == CAREPLAN_CATEGORY_SYSTEM and c.code == VISIT_PLAN_CODE
        for concept in _list(resource.get("category"))
        for c in _codings(concept)
    )


def visits(plans: Iterable[Json], day: date) -> list[Visit]:
    """The planned visits of `day` (in Norwegian time) in the active visit plans (CarePlan
    category 3), in time order."""
    found: list[Visit] = []
    for plan in plans:
        if plan.get("status") not in ("active", None) or not is_visit_plan(plan):
            continue
        for activity in map(_dict, _list(plan.get("activity"))):
            detail = _dict(activity.get("detail"))
            if detail.get("status") in ("cancelled", "entered-in-error", "stopped"):
                continue
            period = _dict(detail.get("scheduledPeriod"))
            start, end = _datetime(period.get("start")), _datetime(period.get("end"))
            if start is None or start.astimezone(OSLO).date() != day:
                continue
            performers = [_str(_dict(p).get("display")) for p in _list(detail.get("performer"))]
            found.append(
                Visit(
                    start=start,
                    end=end,
                    activity=_str(detail.get("description")) or _text(detail.get("code")),
                    performer=", ".join(p for p in performers if p),
                )
            )
    return sorted(found, key=lambda v: v.start or datetime.min.replace(tzinfo=OSLO))


def critical_information(resources: list[Json]) -> list[CriticalInformation]:
    """Allergies, then warnings, as the EPJ lists them."""
    allergies = [
        a for r in resources if r.get("resourceType") == "AllergyIntolerance" if (a := allergy(r))
    ]
    warnings = [w for r in resources if r.get("resourceType") == "Flag" if (w := warning(r))]
    return allergies + warnings
