"""The outbox relays: committed events to journaling's Enqueue in position order (one relay at a
time, by lease, so several replicas never reorder a patient), retried with backoff while
journaling is away and marked sent only once journaling has them; and the batches' audit records
to the audit service."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import event_pb2
from vkp.journaling.v1 import journaling_pb2 as jpb
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_ingest.settings import IngestSettings
from vkp_ingest.store import IngestStore, Outgoing
from vkp_lib.audit_client import AuditClient
from vkp_lib.logging import get_logger

log = get_logger("vkp.ingest.relay")


def _item(event: Outgoing) -> jpb.EnqueueItem:
    item = jpb.EnqueueItem(
        entry_id=event.id,
        event=event_pb2.Event.FromString(event.event),
        vendor_system=event.vendor_system,
        client_id=event.client_id,
        traceparent=event.traceparent,
    )
    item.receive_time.FromDatetime(event.receive_time)
    return item


class Relay:
    def __init__(
        self,
        store: IngestStore,
        journaling: grpc.aio.Channel,
        settings: IngestSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._stub = journaling_pb2_grpc.JournalingServiceStub(journaling)
        self.settings = settings
        self._clock = clock
        self._owner = uuid.uuid4().hex

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 0.1
        while not stopping.is_set():
            try:
                sent = await self.send()
                backoff = 0.1
            except grpc.aio.AioRpcError as exc:
                log.warning("journaling not reached", code=exc.code().name)
                sent = 0
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                log.warning("relay step failed", error_type=type(exc).__name__)
                sent = 0
                backoff = min(backoff * 2, 5.0)
            if not sent:
                wait = backoff if backoff > 0.1 else self.settings.relay_poll_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), wait)

    async def send(self) -> int:
        """Sends the oldest unsent events, if this relay holds the outbox; how many."""
        batch = await self.store.unsent(self.settings.relay_batch)
        if not batch:  # nothing to send: no write for the lease either
            return 0
        lease = timedelta(seconds=self.settings.relay_lease_seconds)
        if not await self.store.lease_outbox(self._owner, self._clock(), lease):
            return 0
        batch = await self.store.unsent(self.settings.relay_batch)  # what the holder may send
        await self._stub.Enqueue(jpb.EnqueueRequest(items=[_item(e) for e in batch]))
        await self.store.mark_sent([e.id for e in batch])
        return len(batch)


class AuditRelay:
    def __init__(self, store: IngestStore, audit: AuditClient, poll_seconds: float = 0.5) -> None:
        self.store = store
        self.audit = audit
        self._poll = poll_seconds

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                pending = await self.store.audit_pending()
                if pending:
                    records = [audit_pb2.AuditRecord.FromString(r) for _, r in pending]
                    await self.audit.record_many(records)
                    await self.store.audit_sent([i for i, _ in pending])
                    continue
            except Exception as exc:
                log.warning("audit relay failed", error_type=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._poll)
