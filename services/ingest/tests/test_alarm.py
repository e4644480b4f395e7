"""The alarm's state rule (domain/alarm.py): what a vendor system's steps of one alarm leave,
whatever their order of arrival and however often each comes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from vkp_ingest.domain.alarm import Alarm, AlarmStep, seen_by, with_step
from vkp_lib.testing.data import TEST_PEOPLE

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FJORDVIK = "964120005"
PATIENT, OTHER = TEST_PEOPLE[0].national_id, TEST_PEOPLE[1].national_id


def step(minute: int, *, closes: bool = False, patient: str = PATIENT) -> AlarmStep:
    return AlarmStep(
        vendor_system="vendors/934560000/systems/response-centre",
        alarm_id="alarm-1",
        municipality=FJORDVIK,
        patient=patient,
        alert_code="3",
        occurred_time=T0 + timedelta(minutes=minute),
        closes=closes,
    )


def fold(steps: list[AlarmStep]) -> Alarm | None:
    alarm: Alarm | None = None
    for each in steps:
        alarm = with_step(alarm, each)
    return alarm


def test_steps_in_any_order_and_repeated_give_the_earliest_and_latest_times() -> None:
    steps = [step(3), step(0), step(7), step(1)]
    for order in itertools.permutations(steps):
        arrived = [order[0], *order, order[2]]  # two of them twice
        alarm = fold(arrived)
        assert alarm is not None
        assert (alarm.opened_time, alarm.last_step_time) == (T0, T0 + timedelta(minutes=7))
        assert alarm.open
        assert alarm.closed_time is None


def test_the_closing_step_closes_the_alarm_even_when_steps_arrive_after_it() -> None:
    alarm = fold([step(0), step(5, closes=True), step(2), step(9)])
    assert alarm is not None
    assert not alarm.open
    assert alarm.closed_time == T0 + timedelta(minutes=5)
    assert alarm.last_step_time == T0 + timedelta(minutes=9)


def test_of_two_closing_steps_the_earlier_one_is_when_it_closed() -> None:
    late_first = fold([step(0), step(8, closes=True), step(6, closes=True)])
    assert late_first is not None
    assert late_first.closed_time == T0 + timedelta(minutes=6)


def test_the_alarm_stays_its_first_patients_and_another_patients_step_changes_nothing() -> None:
    first = fold([step(2), step(4)])
    after = fold([step(2), step(4), step(0, patient=OTHER), step(9, closes=True, patient=OTHER)])
    assert after == first
    assert after is not None
    assert after.patient == PATIENT


def test_an_alarm_is_seen_only_by_a_question_about_its_own_patient_and_municipality() -> None:
    alarm = fold([step(0)])
    assert seen_by(alarm, FJORDVIK, PATIENT) == alarm
    assert seen_by(alarm, FJORDVIK, OTHER) is None
    assert seen_by(alarm, "974760673", PATIENT) is None
    assert seen_by(None, FJORDVIK, PATIENT) is None
