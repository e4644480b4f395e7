"""The registry's access decision, on an in-memory snapshot (pure domain, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vkp_registry.domain.decision import AccessSnapshot
from vkp_registry.domain.model import (
    Action,
    Agreement,
    AgreementState,
    Change,
    ChangeType,
    DenialReason,
    Municipality,
    MunicipalityState,
    PartnerProfile,
    Resource,
    ServiceCode,
    VendorSystem,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLACE = Municipality("964120005", "4699", "Fjordvik kommune")
SYSTEM = VendorSystem("912340007", "dispenser-cloud", "Dosetta", ("dosetta",))
AGREEMENT = Agreement(
    PLACE.organization_number, "a1", SYSTEM.name, (ServiceCode.MD,), (Action.JOURNAL,)
)


def snapshot(*resources: Resource) -> AccessSnapshot:
    s = AccessSnapshot()
    for revision, resource in enumerate(resources, start=1):
        s.apply(Change(revision, NOW, ChangeType.CREATED, resource.name, resource))
    return s


def decide(
    s: AccessSnapshot, client: str = "dosetta", *, at: datetime = NOW
) -> DenialReason | None:
    return s.decide(
        client, PLACE.organization_number, ServiceCode.MD, Action.JOURNAL, at
    ).denial_reason


def test_an_agreement_in_force_allows_and_names_the_profile_patterns() -> None:
    profile = PartnerProfile(PLACE.organization_number, ((ServiceCode.MD, ("27", "2.7.*")),))
    s = snapshot(PLACE, SYSTEM, AGREEMENT, profile)
    decision = s.decide("dosetta", PLACE.organization_number, ServiceCode.MD, Action.JOURNAL, NOW)
    assert decision.allowed
    assert decision.agreement == AGREEMENT.name
    assert decision.service_type_patterns == ("27", "2.7.*")
    assert decision.revision == 4


def test_an_unknown_client_or_municipality_is_an_unknown_organization() -> None:
    s = snapshot(PLACE, SYSTEM, AGREEMENT)
    assert decide(s, "someone-else") is DenialReason.UNKNOWN_ORGANIZATION
    other = s.decide("dosetta", "971130008", ServiceCode.MD, Action.JOURNAL, NOW)
    assert other.denial_reason is DenialReason.UNKNOWN_ORGANIZATION


def test_an_unknown_municipality_names_the_known_system_and_an_unknown_client_nothing() -> None:
    """So the caller can say which of the two is unknown."""
    s = snapshot(PLACE, SYSTEM, AGREEMENT)
    unknown_client = s.decide(
        "someone-else", PLACE.organization_number, ServiceCode.MD, Action.JOURNAL, NOW
    )
    unknown_place = s.decide("dosetta", "971130008", ServiceCode.MD, Action.JOURNAL, NOW)
    assert (unknown_client.vendor_system, unknown_client.municipality_number) == ("", "")
    assert (unknown_place.vendor_system, unknown_place.municipality_number) == (SYSTEM.name, "")


def test_a_suspended_municipality_is_not_active_even_with_an_agreement() -> None:
    suspended = Municipality("964120005", "4699", "Fjordvik", MunicipalityState.SUSPENDED)
    assert decide(snapshot(suspended, SYSTEM, AGREEMENT)) is DenialReason.NOT_ACTIVE


def test_without_an_agreement_there_is_no_access() -> None:
    assert decide(snapshot(PLACE, SYSTEM)) is DenialReason.NO_ACCESS


def test_an_agreement_for_another_service_or_action_is_not_allowed() -> None:
    s = snapshot(PLACE, SYSTEM, AGREEMENT)
    assert (
        s.decide(
            "dosetta", PLACE.organization_number, ServiceCode.DT, Action.JOURNAL, NOW
        ).denial_reason
        is DenialReason.NOT_ALLOWED
    )
    assert (
        s.decide(
            "dosetta", PLACE.organization_number, ServiceCode.MD, Action.LOOKUP, NOW
        ).denial_reason
        is DenialReason.NOT_ALLOWED
    )


def test_an_agreement_outside_its_validity_or_revoked_is_not_active() -> None:
    bounded = Agreement(
        PLACE.organization_number,
        "a1",
        SYSTEM.name,
        (ServiceCode.MD,),
        (Action.JOURNAL,),
        valid_from=NOW,
        valid_until=NOW + timedelta(days=1),
    )
    s = snapshot(PLACE, SYSTEM, bounded)
    assert decide(s, at=NOW - timedelta(seconds=1)) is DenialReason.NOT_ACTIVE
    assert decide(s, at=NOW) is None
    assert decide(s, at=NOW + timedelta(days=1)) is DenialReason.NOT_ACTIVE
    revoked = snapshot(
        PLACE,
        SYSTEM,
        Agreement(
            PLACE.organization_number,
            "a1",
            SYSTEM.name,
            (ServiceCode.MD,),
            (Action.JOURNAL,),
            state=AgreementState.REVOKED,
        ),
    )
    assert decide(revoked) is DenialReason.NOT_ACTIVE


def test_a_deleted_agreement_and_a_client_id_moved_away_stop_the_access() -> None:
    s = snapshot(PLACE, SYSTEM, AGREEMENT)
    s.apply(Change(10, NOW, ChangeType.DELETED, AGREEMENT.name, None))
    assert decide(s) is DenialReason.NO_ACCESS
    s = snapshot(PLACE, SYSTEM, AGREEMENT)
    renamed = VendorSystem("912340007", "dispenser-cloud", "Dosetta", ("dosetta-v2",))
    s.apply(Change(10, NOW, ChangeType.UPDATED, renamed.name, renamed))
    assert decide(s) is DenialReason.UNKNOWN_ORGANIZATION
    assert decide(s, "dosetta-v2") is None
    assert s.revision == 10
