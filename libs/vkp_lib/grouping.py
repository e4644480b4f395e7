"""Group commit in a process: one commit at a time; whatever arrives while it runs waits and goes
together in the next, so many callers share one durable transaction. Each caller gets its own
result, or the commit's error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from vkp_lib.errors import Unavailable

R = TypeVar("R")
T = TypeVar("T")


class GroupCommit(Generic[R, T]):
    def __init__(
        self,
        commit: Callable[[list[R]], Awaitable[list[T]]],
        *,
        size: Callable[[R], int],
        max_size: int,
        stopping_reason: str,
    ) -> None:
        """`commit` gets the waiting requests in order and answers one result each; a group takes
        requests until their `size` reaches `max_size`."""
        self._commit = commit
        self._size = size
        self._max = max_size
        self._stopping_reason = stopping_reason
        self._queue: asyncio.Queue[tuple[R, asyncio.Future[T]]] = asyncio.Queue()
        self._running = True  # until `run` ends

    async def submit(self, request: R) -> T:
        """Returns once the request's group is committed."""
        if not self._running:
            raise Unavailable(self._stopping_reason, "the service is stopping")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
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
                size = self._size(waiting[0][0])
                while not self._queue.empty() and size < self._max:
                    item = self._queue.get_nowait()
                    waiting.append(item)
                    size += self._size(item[0])
                await self._settle(waiting)
        finally:
            self._running = False
            stop.cancel()

    async def _settle(self, waiting: list[tuple[R, asyncio.Future[T]]]) -> None:
        try:
            results = await self._commit([request for request, _ in waiting])
        except Exception as exc:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(waiting, results, strict=True):
            if not future.done():
                future.set_result(result)
