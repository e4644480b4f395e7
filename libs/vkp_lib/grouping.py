"""Grouping in a process: one batch at a time; whatever arrives while a batch is handled waits
and goes together in the next, so many callers share one durable transaction or one RPC. Each
caller gets its own result, or its own error, or the batch's error.

`Batcher` is the one mechanism. The database's writer (`vkp_lib.db.Database.write`: works in
one transaction, a SAVEPOINT each), the group commits of the stores (`GroupCommit`: ingest's
registrations, audit's appends) and the audit client's `Record` calls are all batchers.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from vkp_lib.errors import Unavailable

R = TypeVar("R")
T = TypeVar("T")


class Batcher(Generic[R, T]):
    def __init__(
        self,
        handle: Callable[[list[R]], Awaitable[Sequence[T | BaseException]]],
        *,
        max_size: int,
        size: Callable[[R], int] = lambda _: 1,
        linger_seconds: float = 0.0,
        closed: Callable[[], BaseException],
        stopped: Callable[[], BaseException] | None = None,
        name: str = "batcher",
    ) -> None:
        """`handle` gets the waiting requests in order and answers one outcome each (a result, or
        an exception for that caller alone; raising fails the whole batch). A batch takes requests
        until their `size` reaches `max_size` (at least one). The first batch after a quiet spell
        waits `linger_seconds` for company. `closed()` is raised to a caller after `close`;
        `stopped()` is each waiting caller's error if the batcher's task is cancelled."""
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._handle = handle
        self._max = max_size
        self._size = size
        self._linger = linger_seconds
        self._closed_error = closed
        self._stopped_error = stopped or closed
        self._name = name
        self._waiting: deque[tuple[R, asyncio.Future[T]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(self, request: R) -> T:
        """Returns the request's outcome once its batch is handled."""
        if self._closed:
            raise self._closed_error()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if self._drainer is None or self._drainer.done():
            # A context of its own: the batch is no one caller's (request id, span).
            self._drainer = asyncio.create_task(
                self._drain(), name=self._name, context=contextvars.Context()
            )
        return await future

    async def close(self) -> None:
        """Refuses new requests and returns once those already waiting are handled."""
        self._closed = True
        if self._drainer is not None:
            await self._drainer

    async def _drain(self) -> None:
        try:
            if self._linger:
                await asyncio.sleep(self._linger)
            while self._waiting:
                await self._settle(self._next_batch())
        except asyncio.CancelledError:
            while self._waiting:
                _, future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(self._stopped_error())
            raise

    def _next_batch(self) -> list[tuple[R, asyncio.Future[T]]]:
        batch = [self._waiting.popleft()]
        total = self._size(batch[0][0])
        while self._waiting and total + self._size(self._waiting[0][0]) <= self._max:
            item = self._waiting.popleft()
            batch.append(item)
            total += self._size(item[0])
        return batch

    async def _settle(self, batch: list[tuple[R, asyncio.Future[T]]]) -> None:
        live = [(request, future) for request, future in batch if not future.done()]
        if not live:
            return
        try:
            outcomes = await self._handle([request for request, _ in live])
        except asyncio.CancelledError:
            for _, future in live:
                if not future.done():
                    future.set_exception(self._stopped_error())
            raise
        except Exception as error:
            for _, future in live:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), outcome in zip(live, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, asyncio.CancelledError):
                future.cancel()
            elif isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


class GroupCommit(Generic[R, T]):
    """A store's group commit: `commit` gets the waiting requests in order and answers one result
    each, in one transaction. Its background task (`run`) closes it when the service stops: what
    is queued is committed, later requests are refused UNAVAILABLE with `stopping_reason`."""

    def __init__(
        self,
        commit: Callable[[list[R]], Awaitable[list[T]]],
        *,
        size: Callable[[R], int],
        max_size: int,
        stopping_reason: str,
    ) -> None:
        def stopping() -> Unavailable:
            return Unavailable(stopping_reason, "the service is stopping")

        self._batcher: Batcher[R, T] = Batcher(
            commit, max_size=max_size, size=size, closed=stopping, name="group commit"
        )

    async def submit(self, request: R) -> T:
        """Returns once the request's group is committed."""
        return await self._batcher.submit(request)

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: when the service stops, commit what is queued and refuse the rest."""
        await stopping.wait()
        await self._batcher.close()
