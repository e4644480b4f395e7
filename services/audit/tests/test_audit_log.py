"""The audit log's periodic work, in-process on a real SQLite database: checkpoints of the heads
that moved, and the verification of every chain exported as a metric."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from vkp_audit.domain.model import Actor, AuditAction, AuditOutcome, AuditRecord, Patient
from vkp_audit.service import AuditService
from vkp_audit.signing import CheckpointSigner
from vkp_audit.store import AuditStore
from vkp_lib.db import Database
from vkp_lib.testing.data import TEST_PEOPLE

FJORDVIK, NORDHEIM = "964120005", "980250008"


def record(n: int, municipality: str) -> AuditRecord:
    return AuditRecord(
        record_id=f"00000000-0000-4000-8000-{n:012d}",
        actor=Actor("dosetta-dispenser"),
        municipality=municipality,
        patients=(Patient(TEST_PEOPLE[n % 3].national_id),),
        action=AuditAction.READ,
        resource="/vkp.lookup.v1.LookupService/GetPatient",
        outcome=AuditOutcome.ALLOWED,
        occurred_time=datetime(2026, 11, 26, 8, n, tzinfo=UTC),
    )


@pytest.fixture
async def audit_log(tmp_path: Path) -> AsyncIterator[tuple[AuditService, InMemoryMetricReader]]:
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}", name="audit")
    await db.start()
    store = AuditStore(db)
    await store.migrate()
    key = tmp_path / "checkpoint.pem"
    CheckpointSigner.create_file(key)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    service = AuditService(store, CheckpointSigner.from_file(key), meter_provider=provider)
    yield service, reader
    await db.close()


async def test_checkpoints_sign_only_the_heads_that_moved(
    audit_log: tuple[AuditService, InMemoryMetricReader],
) -> None:
    log, _ = audit_log
    await log.store.append([record(1, FJORDVIK), record(2, NORDHEIM)], datetime.now(UTC))
    assert await log.checkpoint_all() == 2
    assert await log.checkpoint_all() == 0
    await log.store.append([record(3, FJORDVIK)], datetime.now(UTC))
    assert await log.checkpoint_all() == 1
    latest = await log.store.latest_checkpoint(FJORDVIK)
    assert latest is not None
    assert latest.sequence == 2
    assert log.signer.valid(latest)


def _gauge(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "vkp.audit.chain.intact":
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    found[str((point.attributes or {})["municipality"])] = int(point.value)
    return found


async def test_the_periodic_verification_exports_each_chain_as_a_metric(
    audit_log: tuple[AuditService, InMemoryMetricReader],
) -> None:
    log, reader = audit_log
    await log.store.append(
        [record(n, FJORDVIK if n % 2 else NORDHEIM) for n in range(1, 7)], datetime.now(UTC)
    )
    assert await log.verify_all() == {FJORDVIK: True, NORDHEIM: True}
    assert _gauge(reader) == {FJORDVIK: 1, NORDHEIM: 1}
    tamper = sa.text(
        "UPDATE audit_records SET body = replace(body, 'allowed', 'denied')"
        " WHERE municipality = :m AND sequence = 2"
    )
    await log.store.db.write(lambda session: session.execute(tamper, {"m": NORDHEIM}))
    assert await log.verify_all() == {FJORDVIK: True, NORDHEIM: False}
    assert _gauge(reader) == {FJORDVIK: 1, NORDHEIM: 0}
