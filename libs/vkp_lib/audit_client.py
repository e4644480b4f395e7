"""Recording accesses in the audit log, for the other services.

`AuditClient.record` returns once the audit service has committed the record in its
municipality's chain: the lookup service awaits it before it answers (no record, no answer);
services that only need the record eventually may put it in an outbox of their own and record it
from there. Each record gets its id here, once, so a retried `Record` stores it once. One `Record`
call is out at a time: a record is sent at once when none is (no wait for company: every lookup
awaits its record), and the records of concurrent callers that arrive while one is out travel
together in the next (`vkp_lib.grouping.Batcher`), so under load each call carries many.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from vkp.audit.v1 import audit_pb2 as pb
from vkp.audit.v1 import audit_pb2_grpc
from vkp_lib.db.rows import new_id
from vkp_lib.grouping import Batcher


def new_record_id() -> str:
    """A new record id: time-ordered (`vkp_lib.db.new_id`), so the audit log's index of record
    ids grows at its end."""
    return new_id()


class AuditClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        max_batch: int = 500,
        linger_seconds: float = 0.0,
    ) -> None:
        self._stub = audit_pb2_grpc.AuditServiceStub(channel)
        self._calls: Batcher[list[pb.AuditRecord], list[pb.RecordResult]] = Batcher(
            self._send,
            max_size=max_batch,
            size=len,
            linger_seconds=linger_seconds,
            closed=lambda: RuntimeError("the audit client is closed"),
            name="audit records",
        )
        self.calls = 0  # Record calls made; for tests

    async def record(self, record: pb.AuditRecord) -> pb.RecordResult:
        """Records one access; returns once it is committed."""
        (result,) = await self.record_many([record])
        return result

    async def record_many(self, records: Sequence[pb.AuditRecord]) -> list[pb.RecordResult]:
        """Records accesses; returns once all are committed, one result per record in order."""
        batch = []
        for record in records:
            copy = pb.AuditRecord()
            copy.CopyFrom(record)
            if not copy.record_id:
                copy.record_id = new_record_id()
            batch.append(copy)
        return await self._calls.submit(batch)

    async def _send(self, batches: list[list[pb.AuditRecord]]) -> list[list[pb.RecordResult]]:
        """One Record call for the records of several callers; each gets its own results."""
        self.calls += 1
        response = await self._stub.Record(
            pb.RecordRequest(records=[r for batch in batches for r in batch])
        )
        results: list[list[pb.RecordResult]] = []
        position = 0
        for batch in batches:
            results.append(list(response.results[position : position + len(batch)]))
            position += len(batch)
        return results
