"""Audit records committed per second: 16 callers each awaiting its record (as lookup does,
fail closed) through the audit client, into a real audit process on SQLite, against the no-op
RPC baseline of the runner benchmark measured in the same run."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from vkp.audit.v1 import audit_pb2 as pb
from vkp.common.v1 import common_pb2
from vkp_lib.audit_client import AuditClient
from vkp_lib.clients import insecure_channel
from vkp_lib.identity.issuer import DevelopmentIssuer, ServiceTokenSource, load_private_key
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.processes import ServiceProcess

MUNICIPALITIES = ("964120005", "971130008", "980250008")


def _record(i: int) -> pb.AuditRecord:
    record = pb.AuditRecord(
        actor=pb.Actor(client_id="bench-client", organization_number="912340007"),
        municipality=MUNICIPALITIES[i % 3],
        patients=[common_pb2.NationalId(value=TEST_PEOPLE[i % 8].national_id)],
        action=pb.AUDIT_ACTION_READ,
        resource="/vkp.lookup.v1.LookupService/GetAlarmContext",
        outcome=pb.AUDIT_OUTCOME_ALLOWED,
    )
    record.occurred_time.GetCurrentTime()
    return record


async def _load(
    address: str, issuer: DevelopmentIssuer, seconds: float, concurrency: int
) -> tuple[float, float, float]:
    tokens = ServiceTokenSource(load_private_key(issuer.service_key_file), "lookup")
    async with insecure_channel(address, "vkp.audit.v1.AuditService", tokens) as channel:
        client = AuditClient(channel)
        for i in range(100):  # warm up
            await client.record(_record(i))
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def caller(n: int) -> None:
            i = n
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                await client.record(_record(i))
                latencies.append(time.perf_counter() - began)
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(caller(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000


def measure_audit(seconds: float, concurrency: int) -> tuple[float, float, float]:
    """Records/s, p50 ms and p99 ms of awaited audit records, each committed durably."""
    with tempfile.TemporaryDirectory() as folder:
        issuer = DevelopmentIssuer.open(Path(folder) / "issuer")
        env = {
            **issuer.env(),
            "VKP_DB_URL": f"sqlite+aiosqlite:///{Path(folder) / 'audit.db'}",
            "VKP_LOG_LEVEL": "WARNING",
            "OTEL_SDK_DISABLED": "true",
        }
        process = ServiceProcess("audit", env)
        try:
            process.wait_serving()
            return asyncio.run(_load(process.address, issuer, seconds, concurrency))
        finally:
            process.send_sigterm()
            process.terminate()
