"""The rules of alarm segments (vkp_journaling.domain.alarm), and the cut's loop against a fake
store: when a segment falls due, the log entry's id, the stored payload."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from vkp_journaling.alarms import AlarmCutter
from vkp_journaling.domain.alarm import (
    AlarmWindows,
    batch_due,
    log_entry_id,
    pack_steps,
    segment_due,
    step_due,
    unpack_steps,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
WINDOWS = AlarmWindows(settle=timedelta(seconds=30), timeout=timedelta(minutes=30))
SYSTEM = "vendors/912340007/systems/alarm-centre"


def test_an_open_step_is_due_after_the_timeout_a_closing_one_after_the_settle_window() -> None:
    assert step_due(WINDOWS, NOW, closes=False) == NOW + WINDOWS.timeout
    assert step_due(WINDOWS, NOW, closes=True) == NOW + WINDOWS.settle


def test_a_settle_window_longer_than_the_timeout_never_puts_the_segment_off() -> None:
    odd = AlarmWindows(settle=timedelta(hours=1), timeout=timedelta(minutes=1))
    assert step_due(odd, NOW, closes=True) == NOW + odd.timeout


def test_a_segment_keeps_its_earliest_due_time() -> None:
    first = step_due(WINDOWS, NOW, closes=False)
    assert segment_due(None, first) == first
    later_open = step_due(WINDOWS, NOW + timedelta(minutes=5), closes=False)
    assert segment_due(first, later_open) == first
    closing = step_due(WINDOWS, NOW + timedelta(minutes=5), closes=True)
    assert segment_due(first, closing) == closing


def test_steps_arriving_together_are_due_as_their_closing_one() -> None:
    assert batch_due(WINDOWS, NOW, [False, True, False]) == (NOW + WINDOWS.settle, True)
    assert batch_due(WINDOWS, NOW, [False]) == (NOW + WINDOWS.timeout, False)


def test_the_log_entry_id_is_the_same_for_the_same_segment_only() -> None:
    first = log_entry_id(SYSTEM, "alarm-1", 1)
    assert first == log_entry_id(SYSTEM, "alarm-1", 1)
    assert first != log_entry_id(SYSTEM, "alarm-1", 2)
    assert first != log_entry_id(SYSTEM, "alarm-2", 1)
    assert first != log_entry_id("vendors/912340007/systems/other", "alarm-1", 1)


def test_packed_steps_unpack_as_they_were() -> None:
    steps = [b"", b"one", bytes(range(256))]
    assert unpack_steps(pack_steps(7, steps)) == (7, steps)
    assert unpack_steps(pack_steps(1, [])) == (1, [])


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x00\x01", pack_steps(1, [b"ab"])[:-1]])
def test_a_damaged_payload_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        unpack_steps(payload)


def test_bytes_after_the_last_step_are_refused() -> None:
    with pytest.raises(ValueError, match="after the last step"):
        unpack_steps(pack_steps(1, [b"ab"]) + b"x")


class FakeAlarms:
    def __init__(self, due: datetime | None) -> None:
        self.due = due
        self.cuts: list[datetime] = []

    async def next_alarm_due(self) -> datetime | None:
        return self.due

    async def cut_alarms(self, now: datetime, limit: int = 32) -> int:
        self.cuts.append(now)
        self.due = None
        return 1


async def test_the_cut_runs_when_an_alarm_is_due_and_tells_delivery() -> None:
    alarms = FakeAlarms(NOW - timedelta(seconds=1))
    told: list[int] = []
    cutter = AlarmCutter(alarms, poll_seconds=60, on_cut=told.append, clock=lambda: NOW)
    assert await cutter.step()
    assert (alarms.cuts, told) == ([NOW], [1])
    assert not await cutter.step()  # nothing due any more


async def test_the_cut_waits_for_an_alarm_not_yet_due() -> None:
    alarms = FakeAlarms(NOW + timedelta(seconds=5))
    cutter = AlarmCutter(alarms, poll_seconds=60, clock=lambda: NOW)
    assert not await cutter.step()
    assert alarms.cuts == []


async def test_the_loop_wakes_at_the_due_time_without_a_poll() -> None:
    """Polling every minute, an alarm due in 0.2 s is cut by the timer the loop set."""
    start = datetime.now(UTC)
    alarms = FakeAlarms(start + timedelta(seconds=0.2))
    cutter = AlarmCutter(alarms, poll_seconds=60)
    stopping = asyncio.Event()
    task = asyncio.create_task(cutter.run(stopping))
    try:
        for _ in range(100):
            if alarms.cuts:
                break
            await asyncio.sleep(0.05)
        assert len(alarms.cuts) == 1
    finally:
        stopping.set()
        await task
