"""Group commit of incoming requests: one registration at a time in this process; the requests
that arrive while it commits wait and go together in the next, so many SubmitEvent calls share
one durable transaction (a handful of statements whatever their number)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from vkp_ingest.store import Incoming, IngestStore, Registered
from vkp_lib.errors import Unavailable

Request = tuple[Sequence[Incoming], dict[str, bytes]]


class Registrar:
    def __init__(
        self,
        store: IngestStore,
        *,
        max_events: int = 2000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._max = max_events
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Request, asyncio.Future[list[Registered]]]]
        self._queue = asyncio.Queue()
        self._running = True  # until `run` ends
        self.commits = 0

    async def register(
        self, incoming: Sequence[Incoming], audits: dict[str, bytes]
    ) -> list[Registered]:
        """Returns once the events are committed durably."""
        if not self._running:
            raise Unavailable("INGEST_STOPPING", "the ingest service is stopping")
        future: asyncio.Future[list[Registered]] = asyncio.get_running_loop().create_future()
        await self._queue.put(((incoming, audits), future))
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
                waiting = [take.result()]
                count = len(waiting[0][0][0])
                while not self._queue.empty() and count < self._max:
                    item = self._queue.get_nowait()
                    waiting.append(item)
                    count += len(item[0][0])
                await self._commit(waiting)
        finally:
            self._running = False
            stop.cancel()

    async def _commit(
        self, waiting: list[tuple[Request, asyncio.Future[list[Registered]]]]
    ) -> None:
        try:
            results = await self._store.register_many([r for r, _ in waiting], self._clock())
        except Exception as exc:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        self.commits += 1
        for (_, future), result in zip(waiting, results, strict=True):
            if not future.done():
                future.set_result(result)
