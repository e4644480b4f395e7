"""Checks the field rules of the contract cannot make: check digits and known county codes."""

from __future__ import annotations

from vkp_lib.errors import FieldViolation, InvalidArgument
from vkp_lib.national_id import is_valid_organization_number

#: The county part (first two digits) of every kommunenummer since 2024.
COUNTIES = frozenset(
    {"03", "11", "15", "18", "31", "32", "33", "34", "39", "40", "42", "46", "50", "55", "56"}
)


def check_organization_number(value: str, field: str) -> None:
    if not is_valid_organization_number(value):
        raise InvalidArgument(
            "INVALID_ORGANIZATION_NUMBER",
            f"{field} is not a valid organisation number",
            violations=[
                FieldViolation(
                    field, "the check digit does not match", "INVALID_ORGANIZATION_NUMBER"
                )
            ],
        )


def check_municipality_number(value: str, field: str) -> None:
    if len(value) != 4 or not value.isdigit() or value[:2] not in COUNTIES:
        raise InvalidArgument(
            "INVALID_MUNICIPALITY_NUMBER",
            f"{field} is not a kommunenummer of a Norwegian county",
            violations=[
                FieldViolation(
                    field, "the first two digits are not a county", "INVALID_MUNICIPALITY_NUMBER"
                )
            ],
        )
