"""Lookup's converters: freshness as the contract carries it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vkp_lookup.convert import freshness_to_pb
from vkp_lookup.domain.model import Freshness

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def test_freshness_carries_its_age_fetch_time_and_staleness() -> None:
    answer = freshness_to_pb(Freshness(NOW - timedelta(seconds=90), stale=True), NOW)
    assert answer.stale
    assert answer.cache_age.ToTimedelta() == timedelta(seconds=90)
    assert answer.fetch_time.ToDatetime(tzinfo=UTC) == NOW - timedelta(seconds=90)


def test_data_fetched_after_now_is_not_of_negative_age() -> None:
    answer = freshness_to_pb(Freshness(NOW + timedelta(seconds=1)), NOW)
    assert answer.cache_age.ToTimedelta() == timedelta(0)
