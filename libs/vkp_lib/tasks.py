"""The loops of background tasks, written once: relays, workers and timers are a `step` that this
module runs until the service stops (the runner owns the task and sets `stopping`).

- `repeat(step, stopping, ...)`: runs `step` again at once while it finds work, waits
  `idle_seconds` (or until `wake` is set) when it found none, and backs off exponentially with
  jitter while it fails. A failure is logged at WARNING when a streak of failures begins (and
  again every `warn_every_seconds` while it lasts), with the error's type and gRPC code only;
  the recovery at INFO.
- `every(seconds, job, stopping, ...)`: a job on a fixed period (checkpoints, verification).
- `Backoff`: the delays, for loops of another shape (a stream that reconnects).
- `wait(stopping, seconds)`: sleep, unless the service is stopping.
- `Waker`: the `wake` event of a `repeat` loop, set now or by a timer at a given time (the
  soonest asked for kept), for a loop that waits for work falling due.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from vkp_lib.logging import get_logger

log = get_logger("vkp.tasks")


@dataclass(frozen=True)
class Backoff:
    """Exponential delays from `base` to `cap` seconds, each drawn in [½, 1] of its value."""

    base: float = 0.1
    cap: float = 5.0

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row (1 for the first)."""
        full = min(self.cap, self.base * 2 ** max(0, failures - 1))
        jittered: float = full * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrecy
        return jittered


async def wait(stopping: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    """Returns after `seconds`, or as soon as `stopping` (or `wake`) is set."""
    events = [stopping] if wake is None else [stopping, wake]
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if wake is not None:
        wake.clear()


class Waker:
    """Wakes a `repeat` loop (its `wake` is `event`): now, or when a time comes (`at`). Only the
    soonest timer is kept; a sooner one replaces it. Made and used on the running loop."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    def set(self) -> None:
        self.event.set()

    def at(self, delay_seconds: float) -> None:
        """Wakes the loop after `delay_seconds` (at once when not positive), unless a timer set
        before rings sooner."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay_seconds)
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._rang)

    def _rang(self) -> None:
        self._timer = None
        self.event.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _error_fields(error: Exception) -> dict[str, str]:
    fields = {"error_type": type(error).__qualname__}
    if isinstance(error, grpc.aio.AioRpcError):
        fields["code"] = error.code().name
    return fields


async def repeat(
    step: Callable[[], Awaitable[int | bool]],
    stopping: asyncio.Event,
    *,
    name: str,
    idle_seconds: float,
    backoff: Backoff = Backoff(),
    wake: asyncio.Event | None = None,
    warn_every_seconds: float = 60.0,
) -> None:
    """Runs `step` until `stopping`: at once again after work (a truthy result), after
    `idle_seconds` (or `wake`) after none, after a backoff after a failure."""
    failures = 0
    warned_at = 0.0
    while not stopping.is_set():
        try:
            busy = await step()
        except Exception as error:
            failures += 1
            now = time.monotonic()
            if failures == 1 or now - warned_at >= warn_every_seconds:
                log.warning(f"{name} failed", failures=failures, **_error_fields(error))
                warned_at = now
            await wait(stopping, backoff.delay(failures))
            continue
        if failures:
            log.info(f"{name} recovered", failures=failures)
            failures = 0
        if not busy:
            await wait(stopping, idle_seconds, wake)


async def every(
    seconds: float,
    job: Callable[[], Awaitable[object]],
    stopping: asyncio.Event,
    *,
    name: str,
) -> None:
    """Runs `job` every `seconds` until `stopping`; a failure is logged and the period kept."""
    while not stopping.is_set():
        await wait(stopping, seconds)
        if stopping.is_set():
            return
        try:
            await job()
        except Exception as error:
            log.warning(f"{name} failed", **_error_fields(error))
