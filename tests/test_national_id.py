from __future__ import annotations

import datetime as dt
import random

import pytest

from vkp_lib.national_id import (
    InvalidNationalId,
    NationalIdKind,
    check_digits,
    is_valid_organization_number,
    parse_national_id,
    synthetic_national_id,
    synthetic_organization_number,
)


def test_synthetic_fnr_from_the_domain_reference_is_valid_and_synthetic() -> None:
    parsed = parse_national_id("02850097219")
    assert parsed.kind is NationalIdKind.FNR
    assert parsed.synthetic
    assert parsed.birth_date == dt.date(2000, 5, 2)


def test_one_changed_digit_fails_the_check_digits() -> None:
    with pytest.raises(InvalidNationalId, match="check digits"):
        parse_national_id("02850097218")


FULL_WIDTH = "".join(chr(0xFF10 + int(d)) for d in "02850097219")


@pytest.mark.parametrize("value", ["0285009721", "028500972190", "0285009721a", FULL_WIDTH])
def test_anything_but_eleven_ascii_digits_is_refused(value: str) -> None:
    with pytest.raises(InvalidNationalId, match="11 digits"):
        parse_national_id(value)


def test_synthetic_ids_are_refused_where_not_allowed() -> None:
    with pytest.raises(InvalidNationalId, match="synthetic"):
        parse_national_id("02850097219", allow_synthetic=False)


def test_d_number_adds_forty_to_the_day() -> None:
    value = synthetic_national_id(
        random.Random(3), birth_date=dt.date(1961, 7, 14), kind=NationalIdKind.DNR
    )
    assert value.startswith("5487")
    parsed = parse_national_id(value)
    assert (parsed.kind, parsed.birth_date) == (NationalIdKind.DNR, dt.date(1961, 7, 14))


def test_h_number_adds_forty_to_the_month_and_is_not_synthetic() -> None:
    first_nine = next(
        f"1247{i:05d}"[:9]
        for i in range(0, 49900, 100)
        if check_digits(f"1247{i:05d}"[:9]) is not None
    )
    parsed = parse_national_id(first_nine + str(check_digits(first_nine)))
    assert parsed.kind is NationalIdKind.HNR
    assert not parsed.synthetic
    assert parsed.birth_date is not None
    assert parsed.birth_date.month == 7


def test_fh_number_starts_with_8_or_9_and_has_no_birth_date() -> None:
    first_nine = next(f"8{i:08d}" for i in range(100) if check_digits(f"8{i:08d}") is not None)
    parsed = parse_national_id(first_nine + str(check_digits(first_nine)))
    assert parsed.kind is NationalIdKind.FHN
    assert parsed.birth_date is None


def test_impossible_date_is_refused() -> None:
    first_nine = next(
        f"3082{y:02d}{i:03d}"
        for y in range(10, 99)
        for i in range(0, 499, 7)
        if check_digits(f"3082{y:02d}{i:03d}") is not None
    )
    with pytest.raises(InvalidNationalId, match="no such date"):
        parse_national_id(first_nine + str(check_digits(first_nine)))


def test_generated_synthetic_ids_are_all_valid_over_many_seeds() -> None:
    rng = random.Random(7)
    for kind in (NationalIdKind.FNR, NationalIdKind.DNR):
        for _ in range(500):
            parsed = parse_national_id(synthetic_national_id(rng, kind=kind))
            assert parsed.synthetic
            assert parsed.kind is kind


def test_national_id_repr_does_not_show_the_id() -> None:
    parsed = parse_national_id("02850097219")
    assert "02850097219" not in repr(parsed)
    assert "02850097219" not in str(parsed)


def test_organization_number_check_digit() -> None:
    assert is_valid_organization_number("312229544")
    assert not is_valid_organization_number("312229545")
    assert not is_valid_organization_number("31222954")
    assert not is_valid_organization_number("31222954x")


def test_generated_organization_numbers_are_valid() -> None:
    rng = random.Random(11)
    assert all(is_valid_organization_number(synthetic_organization_number(rng)) for _ in range(500))


def test_check_digits_are_mod_11_with_the_published_weights() -> None:
    def mod11(digits: str, weights: tuple[int, ...]) -> int | None:
        check = (11 - sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11) % 11
        return None if check == 10 else check

    rng = random.Random(11)
    for _ in range(20_000):
        first_nine = f"{rng.randrange(10**9):09d}"
        k1 = mod11(first_nine, (3, 7, 6, 1, 8, 9, 4, 5, 2))
        k2 = None if k1 is None else mod11(f"{first_nine}{k1}", (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))
        assert check_digits(first_nine) == (None if k2 is None else f"{k1}{k2}")
