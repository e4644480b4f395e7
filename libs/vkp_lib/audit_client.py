"""Recording accesses in the audit log, for the other services.

`AuditClient.record` returns once the audit service has committed the record in its
municipality's chain: the lookup service awaits it before it answers (no record, no answer);
services that only need the record eventually may put it in an outbox of their own and record it
from there. Each record gets its id here, once, so a retried `Record` stores it once. Records from
concurrent callers that arrive within `linger_seconds` of each other travel in one `Record` call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import grpc

from vkp.audit.v1 import audit_pb2 as pb
from vkp.audit.v1 import audit_pb2_grpc

Waiting = tuple[list[pb.AuditRecord], asyncio.Future[list[pb.RecordResult]]]


def new_record_id() -> str:
    return str(uuid.uuid4())


class AuditClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        max_batch: int = 500,
        linger_seconds: float = 0.002,
    ) -> None:
        self._stub = audit_pb2_grpc.AuditServiceStub(channel)
        self._max = max_batch
        self._linger = linger_seconds
        self._waiting: list[Waiting] = []
        self._flush: asyncio.Task[None] | None = None
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
        future: asyncio.Future[list[pb.RecordResult]] = asyncio.get_running_loop().create_future()
        self._waiting.append((batch, future))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._send_soon())
        return await future

    async def _send_soon(self) -> None:
        await asyncio.sleep(self._linger)
        while self._waiting:
            taken: list[Waiting] = []
            count = 0
            while self._waiting and (not taken or count + len(self._waiting[0][0]) <= self._max):
                item = self._waiting.pop(0)
                taken.append(item)
                count += len(item[0])
            await self._send(taken)

    async def _send(self, taken: list[Waiting]) -> None:
        records = [r for batch, _ in taken for r in batch]
        try:
            self.calls += 1
            response = await self._stub.Record(pb.RecordRequest(records=records))
        except Exception as exc:
            for _, future in taken:
                if not future.done():
                    future.set_exception(exc)
            return
        position = 0
        for batch, future in taken:
            if not future.done():
                future.set_result(list(response.results[position : position + len(batch)]))
            position += len(batch)
