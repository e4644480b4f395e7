"""The audit service in-process, without a server: the real store on a SQLite file in the test's
folder, a checkpoint key of its own, the metrics read in memory, and the appender running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from vkp_audit.service import AuditService
from vkp_audit.signing import CheckpointSigner
from vkp_audit.store import AuditStore
from vkp_lib.db import Database


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
async def service(
    tmp_path: Path, metric_reader: InMemoryMetricReader
) -> AsyncIterator[AuditService]:
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}", name="audit")
    await db.start()
    store = AuditStore(db)
    await store.migrate()
    key = tmp_path / "checkpoint.pem"
    CheckpointSigner.create_file(key)
    provider = MeterProvider(metric_readers=[metric_reader])
    audit = AuditService(
        store,
        CheckpointSigner.from_file(key),
        checkpoint_seconds=0.01,
        verify_seconds=0.01,
        meter_provider=provider,
    )
    stopping = asyncio.Event()
    appender = asyncio.create_task(audit.appender.run(stopping))
    yield audit
    stopping.set()
    await appender
    await db.close()
    provider.shutdown()
