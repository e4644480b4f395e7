"""Resource names: each pattern formats and parses its own names, refuses others, and is the
pattern the contracts document."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkp_lib.names import (
    AGREEMENT,
    ENTRY,
    EPJ_ENDPOINT,
    EVENT,
    MUNICIPALITY,
    PATTERNS,
    VENDOR_SYSTEM,
    Pattern,
    organization_of,
)

PROTOS = Path(__file__).resolve().parents[1] / "protos" / "vkp"


def test_a_name_formats_and_parses_back_to_its_ids() -> None:
    name = AGREEMENT.format(organization_number="964120005", agreement_id="dispenser")
    assert name == "municipalities/964120005/agreements/dispenser"
    assert AGREEMENT.parse(name) == {
        "organization_number": "964120005",
        "agreement_id": "dispenser",
    }
    assert AGREEMENT.id_of(name) == "dispenser"
    assert AGREEMENT.id_of(name, "organization_number") == "964120005"


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        (MUNICIPALITY, "municipalities/964120005/agreements/x"),
        (AGREEMENT, "municipalities/964120005/agreements/"),
        (AGREEMENT, "municipalities//agreements/x"),
        (EPJ_ENDPOINT, "municipalities/964120005/partnerProfile"),
        (VENDOR_SYSTEM, "vendors/912340007/systems/a/b"),
        (EVENT, "entries/abc"),
        (ENTRY, "entries/"),
    ],
)
def test_a_name_of_another_shape_parses_to_none(pattern: Pattern, name: str) -> None:
    assert pattern.parse(name) is None


def test_an_id_with_a_slash_or_none_at_all_is_not_formatted() -> None:
    with pytest.raises(ValueError, match="segment"):
        EVENT.format(event_id="a/b")
    with pytest.raises(ValueError, match="segment"):
        EVENT.format(event_id="")
    with pytest.raises(ValueError, match="takes"):
        EVENT.format(entry_id="x")


def test_the_organisation_of_a_name_under_a_municipality_or_vendor() -> None:
    assert organization_of("vendors/912340007/systems/dispenser-cloud") == "912340007"
    assert organization_of("municipalities/964120005") == "964120005"
    assert organization_of("events/abc") is None
    assert organization_of("vendors/") is None


def test_every_pattern_is_documented_in_the_contracts() -> None:
    documented = "\n".join(p.read_text() for p in PROTOS.glob("*/v1/*.proto"))
    assert [p.template for p in PATTERNS if f"//   {p.template}" not in documented] == []
