"""The outbox relays, background tasks on `vkp_lib.tasks.repeat`:

- `JournalingRelay`: committed events to journaling's Enqueue (one relay at a time, by lease, so
  several replicas never reorder a patient), retried with backoff while journaling is away and
  marked sent only once journaling has them. Each call takes the oldest unsent events of every
  municipality that has any, a fair share each, so one municipality's backlog does not hold up
  another's events; each municipality's events (so each patient's) go in position order, batch
  after batch. It waits for work, not polls: a registration in this process wakes it
  (`wake`); the slow poll (`relay_poll_seconds`) only finds other replicas' registrations;
- `audit_relay`: the accepted batches' audit records to the audit service
  (`vkp_lib.audit_relay.AuditRelay` over the store's audit outbox).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vkp.audit.v1 import audit_pb2
from vkp.journaling.v1 import journaling_pb2 as jpb
from vkp_ingest import convert
from vkp_ingest.settings import IngestSettings
from vkp_ingest.store import IngestStore
from vkp_lib.audit_client import AuditClient
from vkp_lib.audit_relay import AuditRelay
from vkp_lib.tasks import Backoff, repeat

#: The waits after failures in a row: 0.2 s, doubling, at most 5 s.
BACKOFF = Backoff(base=0.2, cap=5.0)


class Enqueuer(Protocol):
    """Journaling's Enqueue (its stub)."""

    @property
    def Enqueue(self) -> Callable[[jpb.EnqueueRequest], Awaitable[jpb.EnqueueResponse]]: ...


class JournalingRelay:
    def __init__(
        self,
        store: IngestStore,
        journaling: Enqueuer,
        settings: IngestSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._journaling = journaling
        self._batch = settings.relay_batch
        self._idle = settings.relay_poll_seconds
        self._lease = timedelta(seconds=settings.relay_lease_seconds)
        self._clock = clock
        self._owner = uuid.uuid4().hex
        #: Until when this relay holds the outbox, as its last lease write said.
        self._held_until: datetime | None = None
        #: The last municipality served, when more wait than one call takes.
        self._after = ""
        #: Set when this process has registered events: send them now, not at the next poll.
        self.wake = asyncio.Event()

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: relay until the service stops."""
        await repeat(
            self.send,
            stopping,
            name="journaling relay",
            idle_seconds=self._idle,
            backoff=BACKOFF,
            wake=self.wake,
        )

    def _holding(self, now: datetime) -> bool:
        """Whether the lease is held for at least half its length still (no write needed)."""
        return self._held_until is not None and now < self._held_until - self._lease / 2

    async def send(self) -> int:
        """Sends the oldest unsent events, if this relay holds the outbox; how many."""
        now = self._clock()
        holding = self._holding(now)
        batch = await self.store.unsent(self._batch, self._after)
        if not batch:  # nothing to send: no write for the lease either
            return 0
        if not holding:
            self._held_until = None
            if not await self.store.lease_outbox(self._owner, now, self._lease):
                return 0
            self._held_until = now + self._lease
            batch = await self.store.unsent(self._batch, self._after)  # what the holder may send
        await self._journaling.Enqueue(
            jpb.EnqueueRequest(items=[convert.enqueue_item(e) for e in batch])
        )
        await self.store.mark_sent([e.id for e in batch])
        served = {e.municipality for e in batch}
        wrapped = [m for m in served if m <= self._after]  # served again from the start
        self._after = max(wrapped or served)
        return len(batch)


def audit_relay(store: IngestStore, audit: AuditClient) -> AuditRelay:
    """The relay of the audit outbox: at most 500 records a call; woken by this process's
    registrations (`wake`), then lingering 0.1 s for the next ones' records (the outbox is
    recorded eventually: nothing waits on it), polled every 2 s for other replicas'."""

    async def pending(limit: int) -> Sequence[tuple[str, audit_pb2.AuditRecord]]:
        return [
            (key, audit_pb2.AuditRecord.FromString(record))
            for key, record in await store.audit_pending(limit)
        ]

    return AuditRelay(
        pending, store.audit_sent, audit, batch=500, idle_seconds=2.0, linger_seconds=0.1
    )
