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

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

import grpc

from vkp.audit.v1 import audit_pb2 as pb
from vkp.audit.v1 import audit_pb2_grpc
from vkp.common.v1 import common_pb2
from vkp_lib.auth import Principal
from vkp_lib.db.rows import new_id
from vkp_lib.grouping import Batcher
from vkp_lib.timestamps import timestamp


class AuditRecorder(Protocol):
    """Records one access and returns once it is committed (`AuditClient.record`)."""

    async def record(self, record: pb.AuditRecord) -> object: ...


class AuditBatchRecorder(Protocol):
    """Records accesses and returns once all are committed (`AuditClient.record_many`)."""

    async def record_many(self, records: Sequence[pb.AuditRecord]) -> object: ...


def new_record_id() -> str:
    """A new record id: time-ordered (`vkp_lib.db.new_id`), so the audit log's index of record
    ids grows at its end."""
    return new_id()


def audit_record_of(
    principal: Principal,
    *,
    vendor_system: str,
    now: datetime,
    municipality: str,
    patients: Iterable[str],
    action: pb.AuditAction.ValueType,
    resource: str,
    service_code: common_pb2.ServiceCode.ValueType,
    outcome: pb.AuditOutcome.ValueType,
    outcome_reason: str = "",
    alarm_id: str = "",
    access_basis: str = "",
    stale_data: bool = False,
    request_id: str = "",
    trace_id: str = "",
) -> pb.AuditRecord:
    """A new audit record (with a new record id) of an access at `now` by `principal` through
    `vendor_system`: the actor is the principal's client and organisation. The request id is
    cut to the contract's 128 characters."""
    return pb.AuditRecord(
        record_id=new_record_id(),
        occurred_time=timestamp(now),
        actor=pb.Actor(
            client_id=principal.client_id,
            organization_number=principal.organization_number,
            vendor_system=vendor_system,
        ),
        municipality=municipality,
        patients=[common_pb2.NationalId(value=p) for p in patients],
        action=action,
        resource=resource,
        purpose=pb.Purpose(service_code=service_code, alarm_id=alarm_id),
        outcome=outcome,
        outcome_reason=outcome_reason,
        access_basis=access_basis,
        stale_data=stale_data,
        request_id=request_id[:128],
        trace_id=trace_id,
    )


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
