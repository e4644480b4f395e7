"""The audit service's use cases: records appended to their chains (Record), the patient's access
log read (Query) and exported (ExportFhir), chains verified (VerifyChain) and their heads signed
(CreateCheckpoint); and the periodic jobs: checkpoints of the heads that moved, and the
verification of every chain, whose result is a metric (vkp.audit.chain.intact).

Each reading use case decides access first (an audit reader reads their own municipality's log
only), then reads the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import metrics

from vkp_audit.domain.access_log import as_seen_by_patient, may_read
from vkp_audit.domain.chain import Verification, verify
from vkp_audit.domain.model import (
    Appended,
    AuditRecord,
    Checkpoint,
    FhirExport,
    Page,
    RecordQuery,
)
from vkp_audit.domain.reasons import Reason
from vkp_audit.fhir import audit_bundle
from vkp_audit.signing import CheckpointSigner
from vkp_audit.store import AuditStore
from vkp_lib.auth import Principal
from vkp_lib.errors import FailedPrecondition, PermissionDenied
from vkp_lib.grouping import GroupCommit
from vkp_lib.logging import get_logger
from vkp_lib.tasks import every

log = get_logger("vkp.audit")

#: The most records one append commits together.
MAX_APPEND = 2000


class AuditService:
    def __init__(
        self,
        store: AuditStore,
        signer: CheckpointSigner,
        *,
        checkpoint_seconds: float = 300.0,
        verify_seconds: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        # One append at a time; records that arrive while it commits go together in the next.
        self.appender: GroupCommit[Sequence[AuditRecord], list[Appended]] = GroupCommit(
            self._append_batches,
            size=len,
            max_size=MAX_APPEND,
            stopping_reason=Reason.AUDIT_STOPPING,
        )
        self._checkpoint_seconds = checkpoint_seconds
        self._verify_seconds = verify_seconds
        self._clock = clock
        self.intact: dict[str, bool] = {}
        meter = metrics.get_meter("vkp.audit", meter_provider=meter_provider)
        meter.create_observable_gauge(
            "vkp.audit.chain.intact",
            callbacks=[self._observe],
            description="1 when the municipality's audit chain verified at the last check",
        )

    # -- Record ------------------------------------------------------------------------------

    async def record(self, records: Sequence[AuditRecord]) -> list[Appended]:
        """Appends the records (each idempotent by its id) once they are committed; one result
        per record, in order."""
        return await self.appender.submit(records)

    async def _append_batches(self, batches: list[Sequence[AuditRecord]]) -> list[list[Appended]]:
        placed = await self.store.append([r for batch in batches for r in batch], self._clock())
        split, start = [], 0
        for batch in batches:
            split.append(placed[start : start + len(batch)])
            start += len(batch)
        return split

    # -- Query, ExportFhir, VerifyChain --------------------------------------------------------

    @staticmethod
    def _check_reader(reader: Principal, municipality: str) -> None:
        if not may_read(reader.organization_number, municipality):
            raise PermissionDenied(
                Reason.WRONG_MUNICIPALITY,
                "an audit reader may read only their own municipality's log",
            )

    async def query(self, reader: Principal, wanted: RecordQuery) -> Page:
        self._check_reader(reader, wanted.municipality)
        return await self.store.query(wanted)

    async def export_fhir(self, reader: Principal, wanted: RecordQuery) -> FhirExport:
        """A page of records as FHIR AuditEvents; a patient's export names that patient only."""
        self._check_reader(reader, wanted.municipality)
        page = await self.store.query(wanted)
        records = page.records
        if wanted.national_id:
            records = as_seen_by_patient(records, wanted.national_id)
        return FhirExport(audit_bundle(records), page.next_page_token)

    async def verify_chain(
        self, reader: Principal, municipality: str, from_sequence: int = 0, to_sequence: int = 0
    ) -> Verification:
        self._check_reader(reader, municipality)
        return await self.verify(municipality, from_sequence, to_sequence)

    async def verify(
        self, municipality: str, from_sequence: int = 0, to_sequence: int = 0
    ) -> Verification:
        """Checks a municipality's chain from `from_sequence` (the start when 0) to
        `to_sequence` (the head when 0) against its hashes and signed checkpoints."""
        start = max(1, from_sequence)
        rows, previous, signed = await self.store.chain(municipality, start, to_sequence)
        return verify(rows, signed, self.signer.valid, from_sequence=start, previous_hash=previous)

    # -- CreateCheckpoint ----------------------------------------------------------------------

    async def create_checkpoint(self, municipality: str) -> Checkpoint:
        """Signs the head of the municipality's chain now (a head signed before is kept)."""
        sequence, head_hash = (await self.store.heads()).get(municipality, (0, ""))
        if sequence == 0:
            raise FailedPrecondition(
                Reason.CHAIN_EMPTY, "the municipality has no audit records yet"
            )
        return await self._sign(municipality, sequence, head_hash)

    async def _sign(self, municipality: str, sequence: int, head_hash: str) -> Checkpoint:
        signed = self.signer.sign(municipality, sequence, head_hash, self._clock())
        return await self.store.save_checkpoint(signed)

    # -- the periodic jobs ---------------------------------------------------------------------

    async def checkpoint_all(self) -> int:
        """Signs every chain head that moved since its last checkpoint; how many were signed."""
        signed = 0
        for municipality, (sequence, head_hash) in (await self.store.heads()).items():
            latest = await self.store.latest_checkpoint(municipality)
            if sequence and (latest is None or latest.sequence < sequence):
                await self._sign(municipality, sequence, head_hash)
                signed += 1
        return signed

    async def verify_all(self) -> dict[str, bool]:
        """Verifies every chain, sets the metric, and logs an error for each that fails."""
        for municipality in await self.store.heads():
            result = await self.verify(municipality)
            self.intact[municipality] = result.intact
            if not result.intact:
                log.error(
                    "audit chain does not verify",
                    municipality=municipality,
                    first_bad_sequence=result.first_bad_sequence,
                    problem=result.problem.value if result.problem else "",
                )
        return dict(self.intact)

    def _observe(self, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [
            metrics.Observation(int(ok), {"municipality": municipality})
            for municipality, ok in self.intact.items()
        ]

    async def checkpoints(self, stopping: asyncio.Event) -> None:
        """Background task: `checkpoint_all` every checkpoint interval, until the service stops."""
        await every(
            self._checkpoint_seconds, self.checkpoint_all, stopping, name="audit checkpoints"
        )

    async def verification(self, stopping: asyncio.Event) -> None:
        """Background task: `verify_all` every verification interval, until the service stops."""
        await every(self._verify_seconds, self.verify_all, stopping, name="audit verification")
