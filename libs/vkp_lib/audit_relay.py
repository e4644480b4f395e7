"""The audit outbox relay, for a service that owes the audit log records it committed in its own
database (ingest's accepted batches, journaling's delivered notes): it reads the records still
owed, records them (`AuditClient`, which returns once the audit service has committed them), then
marks them sent. A crash between the two sends them again; each record's id was fixed when it was
written to the outbox, so the audit log stores it once.

The service says where its outbox is with two functions: `pending(limit)`, the owed records with
a key each (oldest first), and `sent(keys)`. A relay woken by each commit that owes records would
read, send and mark a handful at a time; with `linger_seconds` it first waits that long for more
(unless it is behind: at the start, and while each call finds a full batch, it sends at once),
so one read, one `Record` call and one write carry the records of many commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from vkp.audit.v1 import audit_pb2
from vkp_lib.audit_client import AuditBatchRecorder
from vkp_lib.tasks import repeat

Pending = Callable[[int], Awaitable[Sequence[tuple[str, audit_pb2.AuditRecord]]]]
Sent = Callable[[Sequence[str]], Awaitable[None]]


class AuditRelay:
    def __init__(
        self,
        pending: Pending,
        sent: Sent,
        audit: AuditBatchRecorder,
        *,
        batch: int = 500,
        idle_seconds: float = 0.5,
        linger_seconds: float = 0.0,
    ) -> None:
        self._pending = pending
        self._sent = sent
        self._audit = audit
        self._batch = batch
        self._idle = idle_seconds
        self._linger = linger_seconds
        #: More may be waiting (at the start, or the last call found a full batch): send without
        #: lingering until a call finds less than a batch.
        self._behind = True
        #: Set to send at once (after a commit that owes records), not at the next poll.
        self.wake = asyncio.Event()

    async def send(self) -> int:
        """Records what is owed, up to one batch (after the linger, unless behind); how many."""
        if self._linger and not self._behind:
            await asyncio.sleep(self._linger)
        owed = await self._pending(self._batch)
        self._behind = len(owed) >= self._batch
        if not owed:
            return 0
        await self._audit.record_many([record for _, record in owed])
        await self._sent([key for key, _ in owed])
        return len(owed)

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: relay until the service stops."""
        await repeat(
            self.send, stopping, name="audit relay", idle_seconds=self._idle, wake=self.wake
        )
