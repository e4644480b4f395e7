"""The audit outbox relay, for a service that owes the audit log records it committed in its own
database (ingest's accepted batches, journaling's delivered notes): it reads the records still
owed, records them (`AuditClient`, which returns once the audit service has committed them), then
marks them sent. A crash between the two sends them again; each record's id was fixed when it was
written to the outbox, so the audit log stores it once.

The service says where its outbox is with two functions: `pending(limit)`, the owed records with
a key each (oldest first), and `sent(keys)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from vkp.audit.v1 import audit_pb2
from vkp_lib.audit_client import AuditClient
from vkp_lib.tasks import repeat

Pending = Callable[[int], Awaitable[Sequence[tuple[str, audit_pb2.AuditRecord]]]]
Sent = Callable[[Sequence[str]], Awaitable[None]]


class AuditRelay:
    def __init__(
        self,
        pending: Pending,
        sent: Sent,
        audit: AuditClient,
        *,
        batch: int = 500,
        idle_seconds: float = 0.5,
    ) -> None:
        self._pending = pending
        self._sent = sent
        self._audit = audit
        self._batch = batch
        self._idle = idle_seconds
        #: Set to send at once (after a commit that owes records), not at the next poll.
        self.wake = asyncio.Event()

    async def send(self) -> int:
        """Records what is owed, up to one batch; how many."""
        owed = await self._pending(self._batch)
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
