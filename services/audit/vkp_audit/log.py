"""The audit log: records appended to their chains, signed checkpoints of the chain heads, and
verification, on demand and periodically (the result is a metric: vkp.audit.chain.intact)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import metrics

from vkp_audit.domain.chain import Verification, verify
from vkp_audit.domain.model import AuditRecord, Checkpoint
from vkp_audit.signing import CheckpointSigner
from vkp_audit.store import Appended, AuditStore
from vkp_lib.errors import FailedPrecondition
from vkp_lib.grouping import GroupCommit
from vkp_lib.logging import get_logger

log = get_logger("vkp.audit")


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        signer: CheckpointSigner,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        # One append at a time; records that arrive while it commits go together in the next.
        self.appender: GroupCommit[Sequence[AuditRecord], list[Appended]] = GroupCommit(
            self._append_batches, size=len, max_size=2000, stopping_reason="AUDIT_STOPPING"
        )
        self._clock = clock
        self.intact: dict[str, bool] = {}
        meter = metrics.get_meter("vkp.audit", meter_provider=meter_provider)
        meter.create_observable_gauge(
            "vkp.audit.chain.intact",
            callbacks=[self._observe],
            description="1 when the municipality's audit chain verified at the last check",
        )

    def _observe(self, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [
            metrics.Observation(int(ok), {"municipality": municipality})
            for municipality, ok in self.intact.items()
        ]

    async def record(self, records: Sequence[AuditRecord]) -> list[Appended]:
        return await self.appender.submit(records)

    async def _append_batches(self, batches: list[Sequence[AuditRecord]]) -> list[list[Appended]]:
        placed = await self.store.append([r for batch in batches for r in batch], self._clock())
        split, start = [], 0
        for batch in batches:
            split.append(placed[start : start + len(batch)])
            start += len(batch)
        return split

    async def verify(
        self, municipality: str, from_sequence: int = 0, to_sequence: int = 0
    ) -> Verification:
        start = max(1, from_sequence)
        rows, previous, signed = await self.store.chain(municipality, start, to_sequence)
        return verify(rows, signed, self.signer.valid, from_sequence=start, previous_hash=previous)

    async def checkpoint(self, municipality: str) -> Checkpoint:
        heads = await self.store.heads()
        if municipality not in heads or heads[municipality][0] == 0:
            raise FailedPrecondition("CHAIN_EMPTY", "the municipality has no audit records yet")
        sequence, head_hash = heads[municipality]
        signed = self.signer.sign(municipality, sequence, head_hash, self._clock())
        return await self.store.save_checkpoint(signed)

    async def checkpoint_all(self) -> int:
        """Signs every chain head that moved since its last checkpoint; how many were signed."""
        signed = 0
        for municipality, (sequence, _) in (await self.store.heads()).items():
            latest = await self.store.latest_checkpoint(municipality)
            if sequence and (latest is None or latest.sequence < sequence):
                await self.checkpoint(municipality)
                signed += 1
        return signed

    async def verify_all(self) -> dict[str, bool]:
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

    @staticmethod
    def every(
        seconds: float, work: Callable[[], Awaitable[object]], name: str
    ) -> Callable[[asyncio.Event], Awaitable[None]]:
        """A background task running `work` every `seconds` until the service stops."""

        async def task(stopping: asyncio.Event) -> None:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), seconds)
                    return
                try:
                    await work()
                except Exception as exc:
                    log.warning(
                        "periodic audit work failed", work=name, error_type=type(exc).__name__
                    )

        task.__qualname__ = name
        return task
