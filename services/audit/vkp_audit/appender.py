"""Group commit of audit records: one append at a time in this process; records that arrive
while it commits wait and go together in the next, so the audit write keeps up with lookups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from vkp_audit.domain.model import AuditRecord
from vkp_audit.store import Appended, AuditStore
from vkp_lib.errors import Unavailable


class Appender:
    def __init__(
        self,
        store: AuditStore,
        *,
        max_records: int = 2000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._max = max_records
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Sequence[AuditRecord], asyncio.Future[list[Appended]]]]
        self._queue = asyncio.Queue()
        self._running = True  # until `run` ends
        self.appends = 0  # transactions committed; for tests and metrics

    async def append(self, batch: Sequence[AuditRecord]) -> list[Appended]:
        """Returns once the records are committed in their chains."""
        if not self._running:
            raise Unavailable("AUDIT_STOPPING", "the audit service is stopping")
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        await self._queue.put((batch, future))
        return await future

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: commit what is queued, until the service stops (then the rest)."""
        stop = asyncio.create_task(stopping.wait())
        try:
            while not (stopping.is_set() and self._queue.empty()):
                take = asyncio.create_task(self._queue.get())
                await asyncio.wait({take, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not take.done():
                    take.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await take
                    continue
                await self._commit([take.result()])
        finally:
            self._running = False
            stop.cancel()

    async def _commit(
        self, waiting: list[tuple[Sequence[AuditRecord], asyncio.Future[list[Appended]]]]
    ) -> None:
        count = len(waiting[0][0])
        while not self._queue.empty() and count < self._max:
            item = self._queue.get_nowait()
            waiting.append(item)
            count += len(item[0])
        records = [record for batch, _ in waiting for record in batch]
        try:
            placed = await self._store.append(records, self._clock())
        except Exception as exc:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        self.appends += 1
        position = 0
        for batch, future in waiting:
            if not future.done():
                future.set_result(placed[position : position + len(batch)])
            position += len(batch)
