"""The background-task loops (`vkp_lib.tasks`): work runs again at once, idleness waits, failures
back off and are logged once per streak, and stopping ends the loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from vkp_lib.tasks import Backoff, every, repeat, wait


def test_the_backoff_doubles_up_to_its_cap_with_jitter_below_each_step() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    for failures, full in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)]:
        delays = [backoff.delay(failures) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays), failures


async def test_wait_returns_when_stopping_is_set_before_its_time() -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stopping.set)
    started = time.monotonic()
    await wait(stopping, 10)
    assert time.monotonic() - started < 1


async def test_repeat_runs_again_at_once_while_there_is_work_and_waits_when_idle() -> None:
    stopping = asyncio.Event()
    calls: list[float] = []
    work = [5, 4, 3, 0]

    async def step() -> int:
        calls.append(time.monotonic())
        if len(calls) == len(work):
            asyncio.get_running_loop().call_later(0.3, stopping.set)
        return work[len(calls) - 1] if len(calls) <= len(work) else 0

    await asyncio.wait_for(repeat(step, stopping, name="relay", idle_seconds=10), 5)
    assert len(calls) == 4  # three with work back to back, then one idle wait ended by stopping
    assert calls[3] - calls[0] < 0.2


async def test_a_wake_ends_the_idle_wait() -> None:
    stopping, wake = asyncio.Event(), asyncio.Event()
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            asyncio.get_running_loop().call_later(0.05, wake.set)
        if calls == 2:
            stopping.set()
        return False

    await asyncio.wait_for(repeat(step, stopping, name="relay", idle_seconds=10, wake=wake), 2)
    assert calls == 2


async def test_failures_back_off_warn_once_per_streak_and_the_recovery_is_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = asyncio.Event()
    outcomes: list[int | Exception] = [ConnectionError(), ConnectionError(), ConnectionError(), 1]
    calls = 0

    async def step() -> int:
        nonlocal calls
        calls += 1
        outcome = outcomes[calls - 1] if calls <= len(outcomes) else 0
        if calls > len(outcomes):
            stopping.set()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with caplog.at_level(logging.INFO, logger="vkp.tasks"):
        await asyncio.wait_for(
            repeat(step, stopping, name="relay", idle_seconds=0.01, backoff=Backoff(0.01, 0.02)),
            5,
        )
    messages = [
        (r.levelno, r.msg["event"] if isinstance(r.msg, dict) else r.getMessage())
        for r in caplog.records
        if r.name == "vkp.tasks"
    ]
    assert messages == [
        (logging.WARNING, "relay failed"),
        (logging.INFO, "relay recovered"),
    ]


async def test_every_runs_its_job_each_period_and_survives_a_failure() -> None:
    stopping = asyncio.Event()
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("once")
        if runs == 3:
            stopping.set()

    await asyncio.wait_for(every(0.01, job, stopping, name="checkpoint"), 5)
    assert runs == 3
