"""The registry's change feed in this process: follows `registry_changes` in revision order,
keeps the access snapshot current, and wakes the `WatchChanges` streams.

Every replica follows the same table, so a change committed through one replica reaches the
snapshot and the subscribers of every other within a poll interval (at once in the replica that
wrote it, which nudges its feed after each write). Between nudges the feed waits: the poll is
only for other replicas' writes, so it is slow (`VKP_REGISTRY_POLL_SECONDS`, 2 s), and an idle
registry reads the table once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from vkp_lib.tasks import Backoff, repeat
from vkp_registry.domain.decision import AccessSnapshot
from vkp_registry.domain.model import Change, Resource

#: The most changes one read of the table applies.
BATCH = 500


class ChangeLog(Protocol):
    """Where the changes are read from (the store)."""

    async def snapshot(self) -> tuple[int, list[Resource]]: ...

    async def changes_after(
        self, revision: int, *, up_to: int | None = None, limit: int = BATCH
    ) -> list[Change]: ...


class Feed:
    def __init__(self, changes: ChangeLog, *, poll_seconds: float = 2.0) -> None:
        self._changes = changes
        self.snapshot = AccessSnapshot()
        self._poll = poll_seconds
        self._nudged = asyncio.Event()
        self._advanced = asyncio.Condition()
        #: Set once the service stops: the streams end.
        self.stopping = asyncio.Event()

    @property
    def revision(self) -> int:
        return self.snapshot.revision

    async def load(self) -> None:
        """The snapshot as the database has it now. The revision is read before the resources,
        so replaying the changes after it on top of them ends at the same state."""
        revision, resources = await self._changes.snapshot()
        snapshot = AccessSnapshot(revision=revision)
        for resource in resources:
            snapshot.put(resource)
        self.snapshot = snapshot
        while await self._step():
            pass

    async def _step(self) -> bool:
        """Applies the next changes; True when there may be more waiting."""
        changes = await self._changes.changes_after(self.snapshot.revision, limit=BATCH)
        if changes:
            for change in changes:
                self.snapshot.apply(change)
            async with self._advanced:
                self._advanced.notify_all()
        return len(changes) == BATCH

    def nudge(self) -> None:
        """A write committed here: read the table now, not at the next poll."""
        self._nudged.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: follow the table until the service stops. While the database is
        away it is read again with a backoff, never slower than every few seconds."""
        streams = asyncio.create_task(self._end_streams_on(stopping))
        try:
            await repeat(
                self._step,
                stopping,
                name="change feed",
                idle_seconds=self._poll,
                backoff=Backoff(base=self._poll, cap=max(self._poll, 5.0)),
                wake=self._nudged,
            )
        finally:
            streams.cancel()
            await self._end_streams()

    async def _end_streams_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        await self._end_streams()

    async def _end_streams(self) -> None:
        self.stopping.set()
        async with self._advanced:
            self._advanced.notify_all()

    async def wait_beyond(self, revision: int, seconds: float) -> None:
        """Returns when the snapshot is past `revision`, after `seconds`, or on shutdown."""
        async with self._advanced:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._advanced.wait_for(
                        lambda: self.snapshot.revision > revision or self.stopping.is_set()
                    ),
                    seconds,
                )
