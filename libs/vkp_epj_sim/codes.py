"""The code systems, identifier systems and extension urls the simulator's records use.

One place for them, so the seed, the tests and the hub's own tests name the same things. The
extension urls and code systems the hub's lookup reads too come from `vkp_lib.epj_profile`
(its docstring says what each extension holds), so the two never drift apart.
"""

from __future__ import annotations

from vkp_lib.epj_profile import (
    ACCESS_HINT_URL,
    CAREPLAN_CATEGORY_SYSTEM,
    DOOR_LOCK_URL,
    EXTENSION_BASE,
    HOUSEHOLD_URL,
    MIDDLE_NAME_URL,
    RELATIONSHIP_SYSTEM,
    ROLE_CODE_SYSTEM,
    VISIT_PLAN_CODE,
    ZONE_URL,
)
from vkp_lib.national_id import IDENTIFIER_SYSTEMS, NationalIdKind

__all__ = [
    "ACCESS_HINT_URL",
    "CAREPLAN_CATEGORY_SYSTEM",
    "DOOR_LOCK_URL",
    "EXTENSION_BASE",
    "HOUSEHOLD_URL",
    "MIDDLE_NAME_URL",
    "RELATIONSHIP_SYSTEM",
    "ROLE_CODE_SYSTEM",
    "VISIT_PLAN_CODE",
    "ZONE_URL",
]

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"

FNR_SYSTEM = IDENTIFIER_SYSTEMS[NationalIdKind.FNR]
DNR_SYSTEM = IDENTIFIER_SYSTEMS[NationalIdKind.DNR]
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGANIZATION_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"


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


EMERGENCY_CONTACT_CODE = "C"
ALLERGY_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION_SYSTEM = (
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
)
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
