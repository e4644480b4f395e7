"""The cut of alarm segments into handling logs (vkp_journaling.domain.alarm), a background task.

A `vkp_lib.tasks.repeat` loop that waits for the earliest alarm due time: woken by an Enqueue in
this process that stored alarm steps (`notify`), by a timer at the earliest due time it read, or
after `poll_seconds` (steps another replica took in). Each step reads the earliest due time (an
index probe, a read: an idle loop writes nothing); when one has come, it cuts the due alarms in
one transaction (JournalStore.cut_alarms: row locks, SKIP LOCKED on PostgreSQL, so replicas cut
different alarms) and tells delivery that logs were queued. The due times are in the database,
so after a restart the first step finds whatever fell due meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from vkp_lib.tasks import Backoff, Waker, repeat

#: Alarms cut in one transaction, at most.
CUT_BATCH = 32
FAILURE_BACKOFF = Backoff(base=0.1, cap=5.0)


class AlarmStore(Protocol):
    """What the cut needs of the store (vkp_journaling.store.JournalStore)."""

    async def next_alarm_due(self) -> datetime | None: ...

    async def cut_alarms(self, now: datetime, limit: int = CUT_BATCH) -> int: ...


class AlarmCutter:
    def __init__(
        self,
        store: AlarmStore,
        *,
        poll_seconds: float,
        on_cut: Callable[[int], None] = lambda alarms: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._on_cut = on_cut
        self._clock = clock
        self._waker: Waker | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: cuts alarms as they fall due, until the service stops."""
        self._waker = Waker()
        try:
            await repeat(
                self.step,
                stopping,
                name="alarm logs",
                idle_seconds=self._poll_seconds,
                backoff=FAILURE_BACKOFF,
                wake=self._waker.event,
            )
        finally:
            self._waker.close()

    def notify(self) -> None:
        """Alarm steps were stored in this process: an alarm may be due sooner."""
        if self._waker is not None:
            self._waker.set()

    async def step(self) -> bool:
        """Cuts the alarms due now; True when some were (more may be due), else the timer set
        for the earliest due time."""
        due = await self._store.next_alarm_due()
        if due is None:
            return False
        now = self._clock()
        if due > now:
            if self._waker is not None:
                self._waker.at((due - now).total_seconds())
            return False
        cut = await self._store.cut_alarms(now, CUT_BATCH)
        if cut:
            self._on_cut(cut)
        return cut > 0
