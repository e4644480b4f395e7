"""The lookup service's rules alone: the service need and the alarm window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from vkp_lookup.domain.need import AlarmState, Episode, alarm_window_open, service_need

TODAY = date(2026, 11, 29)
NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def episode(
    episode_id: str,
    type_code: str,
    status: str = "active",
    start: date | None = None,
    end: date | None = None,
) -> Episode:
    return Episode(episode_id, type_code, status, start, end)


def test_an_active_episode_of_a_mapped_type_is_the_service_need() -> None:
    found = service_need([episode("e2", "6"), episode("e1", "27")], ["27"], TODAY)
    assert found == episode("e1", "27")


def test_patterns_are_globs_of_the_partner_profile() -> None:
    assert service_need([episode("e1", "2.2.1")], ["DHO", "2.2.*"], TODAY) is not None
    assert service_need([episode("e1", "2.21")], ["2.2.*"], TODAY) is None


@pytest.mark.parametrize(
    "other",
    [
        episode("e1", "27", status="finished"),
        episode("e1", "27", status="planned"),
        episode("e1", "27", start=TODAY + timedelta(days=1)),
        episode("e1", "27", end=TODAY - timedelta(days=1)),
        episode("e1", "28"),
    ],
)
def test_no_need_from_an_episode_that_is_not_active_today_or_of_another_type(
    other: Episode,
) -> None:
    assert service_need([other], ["27"], TODAY) is None


def test_the_alarm_window_is_open_while_the_alarm_is_and_for_the_grace_after() -> None:
    grace = timedelta(minutes=2)
    assert alarm_window_open(AlarmState(open=True), NOW, grace)
    closed = AlarmState(open=False, close_time=NOW - timedelta(minutes=1))
    assert alarm_window_open(closed, NOW, grace)
    long_closed = AlarmState(open=False, close_time=NOW - timedelta(minutes=3))
    assert not alarm_window_open(long_closed, NOW, grace)
    assert not alarm_window_open(None, NOW, grace)
