"""Audit records committed per second when 16 callers each await theirs, as lookup does (fail
closed), through the audit client (which carries the records of concurrent callers in one
Record call), into the hub's audit service, against the no-op RPC measured in the same run. The
records are built before the clock starts."""

from __future__ import annotations

import asyncio
import time

from hub import Hub
from load import ClientCpu, Load

from vkp.audit.v1 import audit_pb2 as pb
from vkp.common.v1 import common_pb2
from vkp_lib.audit_client import AuditClient
from vkp_lib.clients import insecure_channel
from vkp_lib.identity.issuer import ServiceTokenSource, load_private_key
from vkp_lib.sandbox import SANDBOX
from vkp_lib.testing.data import TEST_PEOPLE

MUNICIPALITIES = tuple(m.organization_number for m in SANDBOX.municipalities)


def _record(i: int) -> pb.AuditRecord:
    record = pb.AuditRecord(
        actor=pb.Actor(client_id="bench-client", organization_number="912340007"),
        municipality=MUNICIPALITIES[i % len(MUNICIPALITIES)],
        patients=[common_pb2.NationalId(value=TEST_PEOPLE[i % 8].national_id)],
        action=pb.AUDIT_ACTION_READ,
        resource="/vkp.lookup.v1.LookupService/GetAlarmContext",
        outcome=pb.AUDIT_OUTCOME_ALLOWED,
    )
    record.occurred_time.GetCurrentTime()
    return record


async def _load(hub: Hub, seconds: float, concurrency: int, rate_bound: float) -> Load:
    tokens = ServiceTokenSource(load_private_key(hub.issuer.service_key_file), "lookup")
    warm_up = 100 if seconds >= 0.5 else 10  # the smoke run's are short
    records = [_record(i) for i in range(warm_up + int(rate_bound * seconds * 1.2) + concurrency)]
    async with insecure_channel(
        hub.address("audit"), "vkp.audit.v1.AuditService", tokens
    ) as channel:
        client = AuditClient(channel)
        for record in records[:warm_up]:
            await client.record(record)
        latencies: list[float] = []
        position = warm_up
        cpu = ClientCpu()
        began = time.perf_counter()
        deadline = began + seconds

        async def caller() -> None:
            nonlocal position
            while position < len(records) and time.perf_counter() < deadline:
                record = records[position]
                position += 1
                start = time.perf_counter()
                await client.record(record)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        return Load(len(latencies), elapsed, latencies, cpu.share())


def measure_audit(hub: Hub, seconds: float, concurrency: int, rate_bound: float) -> Load:
    """Records/s and latencies of awaited audit records, each committed durably."""
    return asyncio.run(_load(hub, seconds, concurrency, rate_bound))
