"""The registry's change feed in this process: follows `registry_changes` in revision order,
keeps the access snapshot current, and wakes the `WatchChanges` streams.

Every replica follows the same table, so a change committed through one replica reaches the
snapshot and the subscribers of every other within a poll interval (at once in the replica that
wrote it, which nudges its feed after each write).
"""

from __future__ import annotations

import asyncio
import contextlib

from vkp_lib.logging import get_logger
from vkp_registry.domain.decision import AccessSnapshot
from vkp_registry.store import RegistryStore

log = get_logger("vkp.registry.feed")


class Feed:
    def __init__(self, store: RegistryStore, *, poll_seconds: float = 0.2) -> None:
        self.store = store
        self.snapshot = AccessSnapshot()
        self._poll = poll_seconds
        self._nudged = asyncio.Event()
        self._advanced = asyncio.Condition()
        self.stopping = asyncio.Event()
        store.after_write = self._nudged.set

    @property
    def revision(self) -> int:
        return self.snapshot.revision

    async def load(self) -> None:
        """The snapshot as the database has it now. The revision is read before the resources,
        so replaying the changes after it on top of them ends at the same state."""
        revision, resources = await self.store.snapshot()
        snapshot = AccessSnapshot(revision=revision)
        for resource in resources:
            snapshot.put(resource)
        self.snapshot = snapshot
        await self.catch_up()

    async def catch_up(self) -> None:
        while changes := await self.store.changes_after(self.snapshot.revision):
            for change in changes:
                self.snapshot.apply(change)
            async with self._advanced:
                self._advanced.notify_all()

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: follow the table until the service stops."""
        stop_watch = asyncio.create_task(self._stop_streams(stopping))
        try:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudged.wait(), self._poll)
                self._nudged.clear()
                try:
                    await self.catch_up()
                except Exception as exc:  # the database is away: try again at the next poll
                    log.warning("change feed not read", error_type=type(exc).__name__)
        finally:
            stop_watch.cancel()

    async def _stop_streams(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
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
