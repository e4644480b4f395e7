"""The registry's rules that the contract's field rules cannot state: check digits and county
codes, what an agreement is called when no id is given, a request id used again, client ids
that belong to another system, and the errors of a resource missing or already there."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from vkp_lib import names
from vkp_lib.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from vkp_lib.national_id import is_valid_organization_number
from vkp_registry.domain.model import (
    Agreement,
    EpjEndpoint,
    Municipality,
    Named,
    RequestKey,
    Vendor,
    VendorSystem,
)
from vkp_registry.domain.reasons import Reason

#: The county part (first two digits) of every kommunenummer since 2024.
COUNTIES = frozenset(
    {"03", "11", "15", "18", "31", "32", "33", "34", "39", "40", "42", "46", "50", "55", "56"}
)

#: The longest resource id (AIP-122, the contract's resource_id rule).
MAX_ID_LENGTH = 63


def check_organization_number(value: str, field: str) -> None:
    if not is_valid_organization_number(value):
        raise InvalidArgument(
            Reason.INVALID_ORGANIZATION_NUMBER,
            f"{field} is not a valid organisation number",
            violations=[
                FieldViolation(
                    field, "the check digit does not match", Reason.INVALID_ORGANIZATION_NUMBER
                )
            ],
        )


def check_municipality_number(value: str, field: str) -> None:
    if len(value) != 4 or not value.isdigit() or value[:2] not in COUNTIES:
        raise InvalidArgument(
            Reason.INVALID_MUNICIPALITY_NUMBER,
            f"{field} is not a kommunenummer of a Norwegian county",
            violations=[
                FieldViolation(
                    field,
                    "the first two digits are not a county",
                    Reason.INVALID_MUNICIPALITY_NUMBER,
                )
            ],
        )


def default_agreement_id(vendor_system: str) -> str:
    """The id of an agreement created without one: the vendor's organisation number and the
    system's id (`912340007-dispenser-cloud`), cut to the longest id."""
    ids = names.VENDOR_SYSTEM.parse(vendor_system)
    if ids is None:  # the contract's pattern refuses such a name before any use case runs
        raise ValueError(f"not a vendor system's name: {vendor_system}")
    return f"{ids['organization_number']}-{ids['system_id']}"[:MAX_ID_LENGTH]


def fingerprint(content: bytes) -> str:
    """A stable hash of a request's content, to tell a retry from a reused request id."""
    return hashlib.sha256(content).hexdigest()


def check_same_request(earlier: RequestKey, now: RequestKey) -> None:
    """A request id answers a retry of the same request only."""
    if (earlier.method, earlier.fingerprint) != (now.method, now.fingerprint):
        raise FailedPrecondition(
            Reason.REQUEST_ID_REUSED, "request_id was used for another request"
        )


def check_client_ids_free(taken: Sequence[str]) -> None:
    """A client id belongs to one vendor system: `taken` are those another system has."""
    if taken:
        raise AlreadyExists(
            Reason.CLIENT_ID_TAKEN,
            "a client id belongs to another vendor system",
            violations=[
                FieldViolation("vendor_system.client_ids", f"{c} is taken", Reason.CLIENT_ID_TAKEN)
                for c in taken
            ],
        )


def check_municipality_number_free(taken: bool) -> None:
    if taken:
        raise AlreadyExists(
            Reason.MUNICIPALITY_EXISTS, "a municipality has this kommunenummer already"
        )


# -- a resource missing or there already -------------------------------------------------------

#: A partner profile is never missing (it is empty until set) and never created twice (it is
#: set, not created), so it has neither.
_NOT_FOUND: dict[type[Named], Reason] = {
    Municipality: Reason.MUNICIPALITY_NOT_FOUND,
    Vendor: Reason.VENDOR_NOT_FOUND,
    VendorSystem: Reason.VENDOR_SYSTEM_NOT_FOUND,
    EpjEndpoint: Reason.EPJ_ENDPOINT_NOT_FOUND,
    Agreement: Reason.AGREEMENT_NOT_FOUND,
}
_EXISTS: dict[type[Named], Reason] = {
    Municipality: Reason.MUNICIPALITY_EXISTS,
    Vendor: Reason.VENDOR_EXISTS,
    VendorSystem: Reason.VENDOR_SYSTEM_EXISTS,
    EpjEndpoint: Reason.EPJ_ENDPOINT_EXISTS,
    Agreement: Reason.AGREEMENT_EXISTS,
}


def not_found(kind: type[Named], name: str) -> NotFound:
    return NotFound(_NOT_FOUND[kind], f"{name} does not exist")


def already_exists(kind: type[Named], name: str) -> AlreadyExists:
    return AlreadyExists(_EXISTS[kind], f"{name} exists")
