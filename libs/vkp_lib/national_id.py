"""Norwegian national ids and organisation numbers: validation and synthetic generation.

- Fødselsnummer (FNR) and D-number (DNR): 11 digits `DDMMYYIIIKK`, two mod-11 check digits.
  A D-number adds 4 to the first digit. An H-number (a provisional id) adds 4 to the third.
- Synthetic test identities add 80 to the month (Skatteetaten's test population), so they can
  never be a real person. Tests and demos use only these.
- FH-number (felles hjelpenummer, Norsk helsenett): 11 digits, first digit 8 or 9, the same two
  check digits, the rest random and meaningless.
- Organisation numbers: 9 digits, one mod-11 check digit.

Pure: no I/O, no gRPC.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from dataclasses import dataclass

_ORG_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)

SYNTHETIC_MONTH_OFFSET = 80
H_NUMBER_MONTH_OFFSET = 40
D_NUMBER_DAY_OFFSET = 40


class NationalIdKind(enum.Enum):
    FNR = "FNR"
    DNR = "DNR"
    HNR = "HNR"
    FHN = "FHN"


#: The contract's `vkp.common.v1.NationalIdType` value names, for each kind that has one (an
#: H-number has none); the converters of every service map through these two.
_TYPE_NAMES = {
    NationalIdKind.FNR: "NATIONAL_ID_TYPE_FNR",
    NationalIdKind.DNR: "NATIONAL_ID_TYPE_DNR",
    NationalIdKind.FHN: "NATIONAL_ID_TYPE_FHN",
}
_KINDS_BY_TYPE_NAME = {name: kind for kind, name in _TYPE_NAMES.items()}


def kind_of_type(type_name: str) -> NationalIdKind | None:
    """The kind a `NationalIdType` value name states (None for UNSPECIFIED or unknown)."""
    return _KINDS_BY_TYPE_NAME.get(type_name)


def type_name_of(kind: NationalIdKind | None) -> str:
    """The `NationalIdType` value name of a kind (UNSPECIFIED for None or an H-number)."""
    unspecified = "NATIONAL_ID_TYPE_UNSPECIFIED"
    return _TYPE_NAMES.get(kind, unspecified) if kind is not None else unspecified


#: FHIR identifier systems of each kind (the OIDs of the Norwegian national-id registers, as HL7
#: Norway's no-basis profiles name them). An H-number has no national system.
IDENTIFIER_SYSTEMS = {
    NationalIdKind.FNR: "urn:oid:2.16.578.1.12.4.1.4.1",
    NationalIdKind.DNR: "urn:oid:2.16.578.1.12.4.1.4.2",
    NationalIdKind.FHN: "urn:oid:2.16.578.1.12.4.1.4.3",
}


class InvalidNationalId(ValueError):
    """The value is not a valid national id; `reason` says why (never repeats the value)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NationalId:
    value: str
    kind: NationalIdKind
    synthetic: bool
    birth_date: dt.date | None

    def __repr__(self) -> str:  # never print the id itself
        return f"NationalId(kind={self.kind.value}, synthetic={self.synthetic})"

    __str__ = __repr__


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    """The mod-11 check digit of `digits` (ASCII digits), or None when none exists (remainder 1)."""
    values = digits.encode().translate(_DIGIT_VALUES)
    remainder = sum([v * w for v, w in zip(values, weights, strict=True)]) % 11
    check = (11 - remainder) % 11
    return None if check == 10 else check


#: ASCII digits to their values (a byte string of digits to a byte string of 0-9).
_DIGIT_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))


def check_digits(first_nine: str) -> str | None:
    """The two check digits for the first nine digits of an 11-digit id, or None if impossible:
    mod-11 with the weights 3 7 6 1 8 9 4 5 2, then 5 4 3 2 7 6 5 4 3 2 over those nine and the
    first check digit (written out: this runs for every event)."""
    d0, d1, d2, d3, d4, d5, d6, d7, d8 = first_nine.encode().translate(_DIGIT_VALUES)
    k1 = (
        11 - (3 * d0 + 7 * d1 + 6 * d2 + d3 + 8 * d4 + 9 * d5 + 4 * d6 + 5 * d7 + 2 * d8) % 11
    ) % 11
    if k1 == 10:
        return None
    k2 = (
        11
        - (5 * d0 + 4 * d1 + 3 * d2 + 2 * d3 + 7 * d4 + 6 * d5 + 5 * d6 + 4 * d7 + 3 * d8 + 2 * k1)
        % 11
    ) % 11
    return None if k2 == 10 else f"{k1}{k2}"


def _century(year2: int, individual: int) -> int | None:
    if individual <= 499:
        return 1900
    if individual <= 749 and year2 >= 54:
        return 1800
    if individual >= 500 and year2 <= 39:
        return 2000
    if individual >= 900 and year2 >= 40:
        return 1900
    return None


def parse_national_id(value: str, *, allow_synthetic: bool = True) -> NationalId:
    """Validate an FNR, D-number, H-number or FH-number; raise InvalidNationalId if it is not."""
    if len(value) != 11 or not value.isascii() or not value.isdigit():
        raise InvalidNationalId("a national id is 11 digits")
    if check_digits(value[:9]) != value[9:]:
        raise InvalidNationalId("check digits do not match")
    if value[0] in "89":
        return NationalId(value, NationalIdKind.FHN, synthetic=False, birth_date=None)

    day, month = int(value[0:2]), int(value[2:4])
    kind = NationalIdKind.FNR
    if day > D_NUMBER_DAY_OFFSET:
        kind, day = NationalIdKind.DNR, day - D_NUMBER_DAY_OFFSET
    synthetic = False
    if month > SYNTHETIC_MONTH_OFFSET:
        synthetic, month = True, month - SYNTHETIC_MONTH_OFFSET
    elif month > H_NUMBER_MONTH_OFFSET:
        if kind is NationalIdKind.DNR:
            raise InvalidNationalId("an id cannot be both a D-number and an H-number")
        kind, month = NationalIdKind.HNR, month - H_NUMBER_MONTH_OFFSET
    if synthetic and not allow_synthetic:
        raise InvalidNationalId("synthetic ids are not accepted here")

    year2, individual = int(value[4:6]), int(value[6:9])
    century = _century(year2, individual)
    if century is None:
        raise InvalidNationalId("individual number does not fit the year of birth")
    try:
        birth_date = dt.date(century + year2, month, day)
    except ValueError:
        raise InvalidNationalId("no such date of birth") from None
    return NationalId(value, kind, synthetic=synthetic, birth_date=birth_date)


def is_valid_organization_number(value: str) -> bool:
    """True for 9 digits whose last is the mod-11 check digit of the first eight."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    return _mod11(value[:8], _ORG_WEIGHTS) == int(value[8])


def _individual_for(year: int, rng: random.Random) -> int:
    if 1900 <= year <= 1999:
        return rng.randint(0, 499)
    if 2000 <= year <= 2039:
        return rng.randint(500, 999)
    if 1854 <= year <= 1899:
        return rng.randint(500, 749)
    raise ValueError("synthetic ids are generated for years 1854-2039")


def synthetic_national_id(
    rng: random.Random,
    *,
    birth_date: dt.date | None = None,
    kind: NationalIdKind = NationalIdKind.FNR,
) -> str:
    """A valid synthetic FNR or D-number (month + 80): never a real person's id."""
    if kind not in (NationalIdKind.FNR, NationalIdKind.DNR):
        raise ValueError("synthetic ids are FNR or DNR")
    while True:
        born = birth_date or dt.date(1930, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 80))
        day = born.day + (D_NUMBER_DAY_OFFSET if kind is NationalIdKind.DNR else 0)
        month = born.month + SYNTHETIC_MONTH_OFFSET
        first_nine = (
            f"{day:02d}{month:02d}{born.year % 100:02d}{_individual_for(born.year, rng):03d}"
        )
        checks = check_digits(first_nine)
        if checks is not None:
            return first_nine + checks


def synthetic_organization_number(rng: random.Random) -> str:
    """A valid organisation number starting with 3; the Brønnøysund registers assign 8 and 9."""
    while True:
        first_eight = f"3{rng.randint(0, 9_999_999):07d}"
        check = _mod11(first_eight, _ORG_WEIGHTS)
        if check is not None:
            return first_eight + str(check)
