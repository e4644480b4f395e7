"""Delivery: workers lease patient queues and deliver each queue's head to the municipality's
EPJ, one note at a time per patient, in sequence order; and the audit relay, which records each
delivered note once in the audit log (an outbox: the record is owed from the moment the note is
journaled, and its id is derived from the entry, so a repeat is stored once)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from opentelemetry import metrics

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2, event_pb2
from vkp_journaling.breaker import Breakers
from vkp_journaling.endpoints import EndpointDirectory
from vkp_journaling.epj import FhirAdapter, Result
from vkp_journaling.render import NoteContext, render_note
from vkp_journaling.settings import JournalingSettings
from vkp_journaling.store import Entry, JournalStore
from vkp_lib.audit_client import AuditClient
from vkp_lib.logging import get_logger

log = get_logger("vkp.journaling.delivery")
AUDIT_NAMESPACE = uuid.UUID("0b0d3c3e-2f7a-4b8e-9c55-6f1f4f1c2a77")


def audit_record_id(entry_id: str) -> str:
    return str(uuid.uuid5(AUDIT_NAMESPACE, entry_id))


class Delivery:
    def __init__(
        self,
        store: JournalStore,
        endpoints: EndpointDirectory,
        adapter: FhirAdapter,
        settings: JournalingSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.adapter = adapter
        self.settings = settings
        self.breakers = Breakers(
            threshold=settings.breaker_threshold,
            cooldown_seconds=settings.breaker_cooldown_seconds,
        )
        self._clock = clock
        self._owner = uuid.uuid4().hex
        self._skip: dict[str, datetime] = {}  # pull-mode municipalities, until when
        meter = metrics.get_meter("vkp.journaling", meter_provider=meter_provider)
        self.dead_letters = meter.create_counter(
            "vkp.journaling.dead_letters", description="Notes given up on: each is one alert."
        )
        self.journaled_notes = meter.create_counter(
            "vkp.journaling.journaled", description="Notes the EPJ confirmed."
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: the workers, until the service stops."""
        await asyncio.gather(*(self._work(stopping, n) for n in range(self.settings.workers)))

    async def _work(self, stopping: asyncio.Event, n: int) -> None:
        owner = f"{self._owner}-{n}"
        while not stopping.is_set():
            try:
                busy = await self.step(owner)
            except Exception as exc:  # the database or the registry is away: try again
                log.warning("delivery step failed", error_type=type(exc).__name__)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.settings.poll_seconds)

    def _paused(self) -> list[str]:
        now = self._clock()
        self._skip = {m: until for m, until in self._skip.items() if until > now}
        return sorted({*self.breakers.paused(), *self._skip})

    async def step(self, owner: str) -> bool:
        """Leases one due patient queue and delivers its due notes; False when none was due."""
        lease = timedelta(seconds=self.settings.lease_seconds)
        paused = self._paused()
        if not await self.store.any_due(self._clock(), paused=paused):
            return False
        claimed = await self.store.claim(owner, self._clock(), lease, paused=paused)
        if claimed is None:
            return False
        municipality, patient = claimed
        # Deliver the queue's notes one after the other while well within the lease.
        until = self._clock() + lease / 2
        try:
            while self._clock() < until and (
                entry := await self.store.head(municipality, patient, self._clock())
            ):
                if not await self._deliver(entry, owner):
                    break
        finally:
            await self.store.release(municipality, patient, owner)
        return True

    async def _deliver(self, entry: Entry, owner: str) -> bool:
        """Delivers one entry; True when the queue may go on to its next."""
        now = self._clock()
        endpoint = await self.endpoints.get(entry.municipality)
        if endpoint is None:
            await self._failed(entry, owner, "NO_EPJ_ENDPOINT", permanent=False)
            return False
        if endpoint.pull:  # the EPJ fetches its notes: not this worker's
            self._skip[entry.municipality] = now + timedelta(seconds=30)
            return False
        self.breakers.starting(entry.municipality)
        try:
            bundle = render_note(event_pb2.Event.FromString(entry.event), _context(entry))
        except Exception as exc:
            log.error("note not rendered", entry_id=entry.entry_id, error_type=type(exc).__name__)
            await self._failed(entry, owner, "RENDER_FAILED", permanent=True)
            return True
        outcome = await self.adapter.deliver(endpoint, bundle)
        if outcome.result is Result.JOURNALED:
            self.breakers.success(entry.municipality)
            note = f"{entry.entry_id}/1"
            if not await self.store.journaled(entry, owner, self._clock(), note):
                return False  # the lease ran out and another worker has the queue
            self.journaled_notes.add(1, {"municipality": entry.municipality})
            return True
        if outcome.result is Result.TRANSIENT:
            self.breakers.failure(entry.municipality)
        await self._failed(
            entry, owner, outcome.reason, permanent=outcome.result is Result.PERMANENT
        )
        return outcome.result is Result.PERMANENT  # a dead note leaves the queue

    async def _failed(self, entry: Entry, owner: str, reason: str, *, permanent: bool) -> None:
        now = self._clock()
        attempts = entry.attempts + 1
        too_old = now - entry.create_time > timedelta(seconds=self.settings.max_age_seconds)
        if permanent or attempts >= self.settings.max_attempts or too_old:
            if await self.store.dead(entry, owner, now, reason):
                self.dead_letters.add(1, {"municipality": entry.municipality})
                log.error(
                    "journal note dead",
                    entry_id=entry.entry_id,
                    municipality=entry.municipality,
                    reason=reason,
                    attempts=attempts,
                )
            return
        delay = min(
            self.settings.backoff_max_seconds,
            self.settings.backoff_base_seconds * 2 ** (attempts - 1),
        ) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrecy
        await self.store.retrying(entry, owner, now, now + timedelta(seconds=delay), reason)


def _context(entry: Entry) -> NoteContext:
    vendor_org = entry.vendor_system.split("/")[1] if "/" in entry.vendor_system else ""
    return NoteContext(
        entry_id=entry.entry_id,
        vendor_organization_number=vendor_org,
        vendor_name="",
        vendor_system=entry.vendor_system,
    )


class AuditRelay:
    """Records each journaled note in the audit log, once."""

    def __init__(self, store: JournalStore, audit: AuditClient, poll_seconds: float = 0.5) -> None:
        self.store = store
        self.audit = audit
        self._poll = poll_seconds

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                sent = await self.send()
            except Exception as exc:
                log.warning("audit relay failed", error_type=type(exc).__name__)
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._poll)

    async def send(self) -> int:
        pending = await self.store.audit_pending()
        if not pending:
            return 0
        await self.audit.record_many([_audit_record(e) for e in pending])
        await self.store.audited([e.entry_id for e in pending])
        return len(pending)


def _audit_record(entry: Entry) -> audit_pb2.AuditRecord:
    record = audit_pb2.AuditRecord(
        record_id=audit_record_id(entry.entry_id),
        actor=audit_pb2.Actor(
            client_id=entry.client_id,
            organization_number=entry.vendor_system.split("/")[1]
            if entry.vendor_system.count("/") >= 1
            else "",
            vendor_system=entry.vendor_system,
        ),
        municipality=entry.municipality,
        patients=[common_pb2.NationalId(value=entry.patient)],
        action=audit_pb2.AUDIT_ACTION_CREATE,
        resource=f"journal note {entry.note_identifier}",
        purpose=audit_pb2.Purpose(
            service_code=common_pb2.ServiceCode.Value(f"SERVICE_CODE_{entry.service_code}")
            if entry.service_code
            else common_pb2.SERVICE_CODE_UNSPECIFIED
        ),
        outcome=audit_pb2.AUDIT_OUTCOME_ALLOWED,
    )
    record.occurred_time.FromDatetime(entry.journaled_time or entry.update_time)
    return record
