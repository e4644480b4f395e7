"""The code systems, identifier systems and extension urls the simulator's records use.

One place for them, so the seed, the tests and the hub's own tests name the same things.
Extensions the FHIR core and the Norwegian base profiles have no element for are under
`http://vkp.example/fhir/StructureDefinition/`:

- on `Patient.address`: `access-hint` (how to get in), `door-lock` (the electronic door-lock
  system), `zone` (the home-care zone or district), each a `valueString`;
- on `Patient`: `household` (who and what lives there: "Bor alene, katt"), a `valueString`.
"""

from __future__ import annotations

from vkp_lib.national_id import IDENTIFIER_SYSTEMS, NationalIdKind

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"

FNR_SYSTEM = IDENTIFIER_SYSTEMS[NationalIdKind.FNR]
DNR_SYSTEM = IDENTIFIER_SYSTEMS[NationalIdKind.DNR]
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGANIZATION_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"

EXTENSION_BASE = "http://vkp.example/fhir/StructureDefinition/"
ACCESS_HINT_URL = EXTENSION_BASE + "access-hint"
DOOR_LOCK_URL = EXTENSION_BASE + "door-lock"
ZONE_URL = EXTENSION_BASE + "zone"
HOUSEHOLD_URL = EXTENSION_BASE + "household"
MIDDLE_NAME_URL = "http://hl7.no/fhir/StructureDefinition/no-basis-middlename"

#: EpisodeOfCare.type: the IPLOS service types (6, 26, 27, 28), and the local codes this EPJ
#: uses for digital home follow-up (`DHO`, `2.2.1`), which IPLOS has none for.
SERVICE_TYPE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9151"
SERVICE_TYPES = {
    "6": "Trygghetsalarm",
    "26": "Lokaliseringsteknologi (GPS)",
    "27": "Elektronisk medisineringsstøtte",
    "28": "Digitalt tilsyn",
    "DHO": "Digital hjemmeoppfølging",
    "2.2.1": "Digital hjemmeoppfølging, målinger",
}

CAREPLAN_CATEGORY_SYSTEM = "http://ehelse.no/fhir/CodeSystem/vkp-careplan-category-v090"
VISIT_PLAN_CODE = "3"

RELATIONSHIP_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0131"
EMERGENCY_CONTACT_CODE = "C"
ROLE_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ALLERGY_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION_SYSTEM = (
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
)
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
