"""The registry's rules, alone: check digits and counties, default agreement ids, request ids,
client ids, field-mask updates, and the reasons the contract documents (pure domain, no
server)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vkp_lib.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vkp_registry.domain import rules
from vkp_registry.domain.model import (
    Action,
    Adapter,
    Agreement,
    AgreementState,
    DeliveryMode,
    EpjEndpoint,
    Municipality,
    MunicipalityState,
    RequestKey,
    ServiceCode,
    Vendor,
    VendorSystem,
)
from vkp_registry.domain.reasons import Reason
from vkp_registry.domain.updates import (
    AgreementUpdate,
    EpjEndpointUpdate,
    MunicipalityUpdate,
    VendorSystemUpdate,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLACE = Municipality("964120005", "4699", "Fjordvik kommune")


# -- check digits, counties, ids ---------------------------------------------------------------


def test_an_organisation_number_with_a_wrong_check_digit_names_its_field() -> None:
    rules.check_organization_number("964120005", "vendor.organization_number")
    with pytest.raises(InvalidArgument) as caught:
        rules.check_organization_number("964120006", "vendor.organization_number")
    assert caught.value.reason == Reason.INVALID_ORGANIZATION_NUMBER
    assert [v.field for v in caught.value.violations] == ["vendor.organization_number"]


@pytest.mark.parametrize("number", ["9901", "0001", "461", "46a1"])
def test_a_kommunenummer_outside_every_county_is_refused(number: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        rules.check_municipality_number(number, "municipality.municipality_number")
    assert caught.value.reason == Reason.INVALID_MUNICIPALITY_NUMBER


def test_a_kommunenummer_of_a_county_is_accepted() -> None:
    rules.check_municipality_number("4699", "municipality.municipality_number")
    rules.check_municipality_number("0301", "municipality.municipality_number")


def test_an_agreement_without_an_id_is_named_after_its_vendor_and_system() -> None:
    assert (
        rules.default_agreement_id("vendors/912340007/systems/dispenser-cloud")
        == "912340007-dispenser-cloud"
    )


def test_a_default_agreement_id_is_cut_to_the_longest_id() -> None:
    derived = rules.default_agreement_id(f"vendors/912340007/systems/{'a' * 63}")
    assert len(derived) == rules.MAX_ID_LENGTH
    assert derived.startswith("912340007-a")


def test_a_request_id_answers_only_a_retry_of_the_same_request() -> None:
    first = RequestKey("r-1", "CreateVendor", rules.fingerprint(b"one"))
    rules.check_same_request(first, RequestKey("r-1", "CreateVendor", rules.fingerprint(b"one")))
    with pytest.raises(FailedPrecondition) as caught:
        rules.check_same_request(first, RequestKey("r-1", "CreateVendor", rules.fingerprint(b"2")))
    assert caught.value.reason == Reason.REQUEST_ID_REUSED
    with pytest.raises(FailedPrecondition):
        rules.check_same_request(first, RequestKey("r-1", "CreateAgreement", first.fingerprint))


def test_client_ids_of_another_system_are_refused_one_violation_each() -> None:
    rules.check_client_ids_free([])
    with pytest.raises(AlreadyExists) as caught:
        rules.check_client_ids_free(["a", "b"])
    assert caught.value.reason == Reason.CLIENT_ID_TAKEN
    assert [v.description for v in caught.value.violations] == ["a is taken", "b is taken"]


@pytest.mark.parametrize(
    ("kind", "missing", "exists"),
    [
        (Municipality, Reason.MUNICIPALITY_NOT_FOUND, Reason.MUNICIPALITY_EXISTS),
        (Vendor, Reason.VENDOR_NOT_FOUND, Reason.VENDOR_EXISTS),
        (VendorSystem, Reason.VENDOR_SYSTEM_NOT_FOUND, Reason.VENDOR_SYSTEM_EXISTS),
        (EpjEndpoint, Reason.EPJ_ENDPOINT_NOT_FOUND, Reason.EPJ_ENDPOINT_EXISTS),
        (Agreement, Reason.AGREEMENT_NOT_FOUND, Reason.AGREEMENT_EXISTS),
    ],
)
def test_each_kind_of_resource_has_its_own_missing_and_existing_reasons(
    kind: type[Municipality], missing: Reason, exists: Reason
) -> None:
    assert isinstance(rules.not_found(kind, "x"), NotFound)
    assert rules.not_found(kind, "x").reason == missing
    assert rules.already_exists(kind, "x").reason == exists


# -- field-mask updates ------------------------------------------------------------------------


def test_an_update_changes_only_the_fields_in_its_mask() -> None:
    update = MunicipalityUpdate(
        frozenset({"state"}), display_name="ignored", state=MunicipalityState.SUSPENDED
    )
    update.check()
    changed = update.apply(PLACE)
    assert changed.state is MunicipalityState.SUSPENDED
    assert changed.display_name == PLACE.display_name


def test_a_needed_field_in_the_mask_but_not_set_is_refused_naming_it() -> None:
    update = VendorSystemUpdate(frozenset({"display_name", "client_ids"}), display_name="X")
    with pytest.raises(InvalidArgument) as caught:
        update.check()
    assert caught.value.reason == Reason.INVALID_UPDATE_MASK
    assert caught.value.message == "client_ids in update_mask but not set"
    assert [v.field for v in caught.value.violations] == ["vendor_system.client_ids"]


def test_an_optional_field_in_the_mask_and_not_set_is_cleared() -> None:
    endpoint = EpjEndpoint(
        PLACE.organization_number,
        Adapter.FHIR,
        "http://epj.example/fhir",
        DeliveryMode.PUSH,
        credentials_secret="epj-4699",  # noqa: S106 - the name of a secret, not one
        request_timeout_seconds=5.0,
    )
    update = EpjEndpointUpdate(frozenset({"credentials_secret", "request_timeout"}))
    update.check()
    cleared = update.apply(endpoint)
    assert (cleared.credentials_secret, cleared.request_timeout_seconds) == ("", None)
    assert cleared.base_url == endpoint.base_url


def test_an_agreements_validity_is_changed_as_a_whole() -> None:
    agreement = Agreement(
        PLACE.organization_number,
        "a1",
        "vendors/912340007/systems/dispenser-cloud",
        (ServiceCode.MD,),
        (Action.JOURNAL,),
        valid_from=NOW,
        valid_until=NOW,
    )
    update = AgreementUpdate(frozenset({"validity"}), valid_from=NOW, state=AgreementState.REVOKED)
    update.check()
    changed = update.apply(agreement)
    assert (changed.valid_from, changed.valid_until) == (NOW, None)
    assert changed.state is AgreementState.ACTIVE


# -- the reasons (the contract's list is kept in step by tests/test_contract_honesty.py) -----


def test_a_reason_is_its_own_name() -> None:
    assert [r.name for r in Reason] == [r.value for r in Reason]
