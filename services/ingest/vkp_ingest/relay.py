"""The outbox relays, background tasks on `vkp_lib.tasks.repeat`:

- `JournalingRelay`: committed events to journaling's Enqueue in position order (one relay at a
  time, by lease, so several replicas never reorder a patient), retried with backoff while
  journaling is away and marked sent only once journaling has them;
- `audit_relay`: the accepted batches' audit records to the audit service
  (`vkp_lib.audit_relay.AuditRelay` over the store's audit outbox).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from vkp.audit.v1 import audit_pb2
from vkp.journaling.v1 import journaling_pb2 as jpb
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_ingest import convert
from vkp_ingest.settings import IngestSettings
from vkp_ingest.store import IngestStore
from vkp_lib.audit_client import AuditClient
from vkp_lib.audit_relay import AuditRelay
from vkp_lib.tasks import Backoff, repeat

#: The waits after failures in a row: 0.2 s, doubling, at most 5 s.
BACKOFF = Backoff(base=0.2, cap=5.0)


class JournalingRelay:
    def __init__(
        self,
        store: IngestStore,
        journaling: journaling_pb2_grpc.JournalingServiceAsyncStub,
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

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: relay until the service stops."""
        await repeat(
            self.send, stopping, name="journaling relay", idle_seconds=self._idle, backoff=BACKOFF
        )

    async def send(self) -> int:
        """Sends the oldest unsent events, if this relay holds the outbox; how many."""
        batch = await self.store.unsent(self._batch)
        if not batch:  # nothing to send: no write for the lease either
            return 0
        if not await self.store.lease_outbox(self._owner, self._clock(), self._lease):
            return 0
        batch = await self.store.unsent(self._batch)  # what the holder may send
        await self._journaling.Enqueue(
            jpb.EnqueueRequest(items=[convert.enqueue_item(e) for e in batch])
        )
        await self.store.mark_sent([e.id for e in batch])
        return len(batch)


def audit_relay(store: IngestStore, audit: AuditClient) -> AuditRelay:
    """The relay of the audit outbox: at most 200 records a call, polled every 0.5 s."""

    async def pending(limit: int) -> Sequence[tuple[str, audit_pb2.AuditRecord]]:
        return [
            (key, audit_pb2.AuditRecord.FromString(record))
            for key, record in await store.audit_pending(limit)
        ]

    return AuditRelay(pending, store.audit_sent, audit, batch=200, idle_seconds=0.5)
