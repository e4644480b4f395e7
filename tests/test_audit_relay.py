"""vkp_lib.audit_relay.AuditRelay over an in-memory outbox and a fake audit log: what is owed is
recorded, then marked sent; with a linger, the records of several commits travel together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from vkp.audit.v1 import audit_pb2
from vkp_lib.audit_relay import AuditRelay


@dataclass
class Outbox:
    owed: dict[str, audit_pb2.AuditRecord] = field(default_factory=dict)
    reads: int = 0

    def add(self, count: int) -> None:
        for _ in range(count):
            key = f"r{len(self.owed) + self.reads * 1000}"
            self.owed[key] = audit_pb2.AuditRecord(record_id=key)

    async def pending(self, limit: int) -> list[tuple[str, audit_pb2.AuditRecord]]:
        self.reads += 1
        return list(self.owed.items())[:limit]

    async def sent(self, keys: Sequence[str]) -> None:
        for key in keys:
            del self.owed[key]


@dataclass
class AuditLog:
    calls: list[list[str]] = field(default_factory=list)

    async def record_many(self, records: Sequence[audit_pb2.AuditRecord]) -> object:
        self.calls.append([r.record_id for r in records])
        return None


async def test_what_is_owed_is_recorded_then_marked_sent() -> None:
    outbox, log = Outbox(), AuditLog()
    outbox.add(3)
    relay = AuditRelay(outbox.pending, outbox.sent, log, batch=10)
    assert await relay.send() == 3
    assert log.calls == [["r0", "r1", "r2"]]
    assert outbox.owed == {}
    assert await relay.send() == 0


async def test_a_lingering_relay_carries_the_records_of_later_commits_in_one_call() -> None:
    outbox, log = Outbox(), AuditLog()
    relay = AuditRelay(outbox.pending, outbox.sent, log, batch=10, linger_seconds=0.05)
    assert await relay.send() == 0  # caught up
    outbox.add(1)  # a commit wakes the relay ...
    sending = asyncio.ensure_future(relay.send())
    await asyncio.sleep(0.01)
    outbox.add(2)  # ... and two more commit while it lingers
    assert await sending == 3
    assert [len(call) for call in log.calls] == [3]
    assert outbox.reads == 2


async def test_a_relay_behind_sends_batch_after_batch_without_lingering_until_caught_up() -> None:
    outbox, log = Outbox(), AuditLog()
    outbox.add(5)  # waiting when the relay starts
    relay = AuditRelay(outbox.pending, outbox.sent, log, batch=2, linger_seconds=30.0)
    sent = [await asyncio.wait_for(relay.send(), timeout=5) for _ in range(3)]
    assert (sent, [len(call) for call in log.calls]) == ([2, 2, 1], [2, 2, 1])
