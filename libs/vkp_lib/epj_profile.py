"""What the hub expects of an EPJ's FHIR records beyond FHIR R4 and the Norwegian base
profiles: the extension urls and code systems lookup reads, and the EPJ simulator writes.

Extensions the core and the base profiles have no element for are under `EXTENSION_BASE`:
on `Patient.address` `access-hint` (how to get in), `door-lock` (the electronic door-lock
system) and `zone` (the home-care zone or district); on `Patient` `household` (who and what
lives there); each a `valueString`.
"""

from __future__ import annotations

EXTENSION_BASE = "http://vkp.example/fhir/StructureDefinition/"
ACCESS_HINT_URL = EXTENSION_BASE + "access-hint"
DOOR_LOCK_URL = EXTENSION_BASE + "door-lock"
ZONE_URL = EXTENSION_BASE + "zone"
HOUSEHOLD_URL = EXTENSION_BASE + "household"
MIDDLE_NAME_URL = "http://hl7.no/fhir/StructureDefinition/no-basis-middlename"

#: CarePlan.category of a visit plan.
CAREPLAN_CATEGORY_SYSTEM = "http://ehelse.no/fhir/CodeSystem/vkp-careplan-category-v090"
VISIT_PLAN_CODE = "3"

RELATIONSHIP_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0131"
ROLE_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
