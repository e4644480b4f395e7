"""Ingest's domain rules of an event (domain/checks.py), alone: no server, no protobuf."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from vkp_ingest.domain.checks import EventFacts, EventRules, check_event
from vkp_ingest.domain.model import content_hash
from vkp_ingest.domain.reasons import Reason
from vkp_lib.errors import InvalidArgument
from vkp_lib.national_id import NationalIdKind, check_digits, synthetic_national_id
from vkp_lib.testing.data import TEST_PEOPLE

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RULES = EventRules(
    allow_synthetic=True, future_skew=timedelta(minutes=5), max_age=timedelta(days=7)
)
SYNTHETIC_FNR = TEST_PEOPLE[0].national_id


def facts(
    national_id: str = SYNTHETIC_FNR,
    kind: NationalIdKind | None = None,
    *,
    at: datetime = NOW - timedelta(minutes=1),
) -> EventFacts:
    return EventFacts(national_id=national_id, stated_kind=kind, occurred_time=at)


def refusal(event: EventFacts, rules: EventRules = RULES) -> tuple[str, list[str]]:
    with pytest.raises(InvalidArgument) as caught:
        check_event(event, NOW, rules, prefix="events[3].")
    return caught.value.reason, [v.field for v in caught.value.violations]


def with_wrong_check_digit(value: str) -> str:
    good = check_digits(value[:9])
    assert good is not None
    return value[:9] + good[0] + str((int(good[1]) + 1) % 10)


def test_a_valid_event_passes_with_or_without_its_stated_kind() -> None:
    check_event(facts(), NOW, RULES)
    check_event(facts(kind=NationalIdKind.FNR), NOW, RULES)
    seeded = random.Random(4)  # noqa: S311 - picks a synthetic test id, not a secret
    d_number = synthetic_national_id(seeded, kind=NationalIdKind.DNR)
    check_event(facts(d_number, NationalIdKind.DNR), NOW, RULES)


def test_a_national_id_failing_its_check_digits_is_invalid_national_id() -> None:
    assert refusal(facts(with_wrong_check_digit(SYNTHETIC_FNR))) == (
        Reason.INVALID_NATIONAL_ID,
        ["events[3].patient.value"],
    )


def test_a_synthetic_id_is_refused_where_the_deployment_allows_none() -> None:
    strict = EventRules(False, RULES.future_skew, RULES.max_age)
    assert refusal(facts(), strict) == (Reason.INVALID_NATIONAL_ID, ["events[3].patient.value"])


def test_a_stated_kind_the_digits_contradict_is_a_type_mismatch() -> None:
    assert refusal(facts(kind=NationalIdKind.DNR)) == (
        Reason.NATIONAL_ID_TYPE_MISMATCH,
        ["events[3].patient.type"],
    )


def test_a_time_beyond_the_future_skew_is_in_the_future_but_within_it_passes() -> None:
    check_event(facts(at=NOW + timedelta(minutes=4)), NOW, RULES)
    assert refusal(facts(at=NOW + timedelta(minutes=6))) == (
        Reason.EVENT_IN_FUTURE,
        ["events[3].occurred_time"],
    )


def test_a_time_older_than_the_window_is_too_old() -> None:
    check_event(facts(at=NOW - timedelta(days=6)), NOW, RULES)
    assert refusal(facts(at=NOW - timedelta(days=8))) == (
        Reason.EVENT_TOO_OLD,
        ["events[3].occurred_time"],
    )


def test_the_national_id_is_checked_before_the_time() -> None:
    late = facts(with_wrong_check_digit(SYNTHETIC_FNR), at=NOW - timedelta(days=30))
    assert refusal(late)[0] == Reason.INVALID_NATIONAL_ID


def test_a_refusal_names_the_field_but_never_the_national_id() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_event(facts(kind=NationalIdKind.DNR), NOW, RULES)
    error = caught.value
    said = [error.message, *(f"{v.field} {v.description}" for v in error.violations)]
    assert all(SYNTHETIC_FNR not in text for text in said)


def test_the_content_hash_tells_other_content_apart() -> None:
    assert content_hash(b"event") == content_hash(b"event")
    assert content_hash(b"event") != content_hash(b"event ")
    assert len(content_hash(b"")) == 64


def test_each_reason_is_its_own_name() -> None:
    assert [r.value for r in Reason] == [r.name for r in Reason]
