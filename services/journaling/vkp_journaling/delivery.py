"""Delivery: workers lease patient queues and deliver each queue's head to the municipality's EPJ,
one note at a time per patient, in sequence order.

Each worker is a `vkp_lib.tasks.repeat` loop: at once again after work, a backoff while the
database or the registry is away, and when there is nothing to do it waits to be woken: by
`notify` (an Enqueue or RetryEntry committed in this process), by a timer at the earliest time a
queue falls due (a retry, an expired lease), or after `poll_seconds` (work another replica took
in). A failed attempt is retried after an exponential backoff with jitter, or the entry is dead
(domain.delivery.after_failure); a breaker per municipality pauses a failing EPJ (breaker.py).

Claims are fair across municipalities: a worker reads each municipality's earliest due time (one
index probe each), and claims in the due municipality this process served least recently, the
queue there due the longest; it delivers at most `NOTES_PER_CLAIM` notes of that queue before it
claims again. So one municipality's backlog, or its EPJ's outage, holds up no other.

The trace goes on: each attempt is a span (kind CONSUMER) whose parent is the stored traceparent
of the vendor's SubmitEvent call, so the attempt, and the EPJ call under it (the httpx
instrumentation), are in the vendor's trace (whose id ingest's audit record of the event also
carries). A parent rather than a link: one entry is one message, delivered on its own
(OpenTelemetry's messaging conventions allow the creation context as the parent then), and a link
alone would leave the delivery in a trace of its own that a search by the vendor's trace id does
not find; the sampling decision the vendor's call made holds for its delivery too. An entry
without a traceparent starts a trace of its own.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vkp.common.v1 import event_pb2
from vkp_journaling.breaker import Breakers
from vkp_journaling.domain.delivery import (
    Dead,
    Failure,
    Outcome,
    Result,
    RetryPolicy,
    after_failure,
)
from vkp_journaling.domain.entry import Claim, Entry
from vkp_journaling.epj import Endpoint
from vkp_journaling.render import NoteContext, note_key, render_note
from vkp_journaling.settings import JournalingSettings
from vkp_lib.logging import get_logger
from vkp_lib.tasks import Backoff, repeat

log = get_logger("vkp.journaling.delivery")
#: The span of one delivery attempt.
SPAN_NAME = "deliver journal note"
#: How long a municipality whose EPJ pulls its notes is left alone.
PULL_SKIP = timedelta(seconds=30)
#: The most notes a worker delivers from one claimed queue before it claims again (fairness).
NOTES_PER_CLAIM = 10
#: The waits of a worker while the database or the registry is away.
FAILURE_BACKOFF = Backoff(base=0.1, cap=5.0)
_PROPAGATOR = TraceContextTextMapPropagator()


class QueueStore(Protocol):
    """What delivery needs of the store (vkp_journaling.store.JournalStore)."""

    async def dues(self, *, paused: Sequence[str] = ()) -> dict[str, datetime]: ...

    async def claim_head(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        paused: Sequence[str] = (),
        order: Sequence[str] | None = None,
    ) -> Claim | None: ...

    async def head(self, municipality: str, patient: str, now: datetime) -> Entry | None: ...

    async def release(self, municipality: str, patient: str, owner: str) -> None: ...

    async def journaled(self, entry: Entry, owner: str, now: datetime, note: str) -> bool: ...

    async def retrying(
        self, entry: Entry, owner: str, now: datetime, at: datetime, reason: str
    ) -> bool: ...

    async def dead(self, entry: Entry, owner: str, now: datetime, reason: str) -> bool: ...


class Endpoints(Protocol):
    """Municipalities' EPJ endpoints (vkp_journaling.endpoints.EndpointDirectory)."""

    async def get(self, municipality: str) -> Endpoint | None: ...


class Adapter(Protocol):
    """Sends a note to an EPJ (vkp_journaling.epj.FhirAdapter)."""

    async def deliver(self, endpoint: Endpoint, bundle: dict[str, Any]) -> Outcome: ...


def vendor_trace(traceparent: str) -> Context:
    """The context of the vendor's call, from its stored W3C traceparent (empty: a new trace)."""
    return _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else Context()


def _note_context(entry: Entry) -> NoteContext:
    return NoteContext(
        entry_id=entry.entry_id,
        vendor_organization_number=entry.vendor_organization_number,
        vendor_name="",
        vendor_system=entry.vendor_system,
    )


class Delivery:
    def __init__(
        self,
        store: QueueStore,
        endpoints: Endpoints,
        adapter: Adapter,
        settings: JournalingSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        on_journaled: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.adapter = adapter
        self.settings = settings
        self.breakers = Breakers(
            threshold=settings.breaker_threshold,
            cooldown_seconds=settings.breaker_cooldown_seconds,
        )
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            max_age=timedelta(seconds=settings.max_age_seconds),
        )
        self._retry_backoff = Backoff(
            base=settings.backoff_base_seconds, cap=settings.backoff_max_seconds
        )
        self._clock = clock
        self._owner = uuid.uuid4().hex
        self._skip: dict[str, datetime] = {}  # pull-mode municipalities, until when
        self._on_journaled = on_journaled
        #: Each worker's wake-up, and the workers waiting for work (the latest last).
        self._wakes = [asyncio.Event() for _ in range(settings.workers)]
        self._idle: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        #: When this process last claimed a queue in each municipality (time.monotonic()).
        self._served: dict[str, float] = {}
        self._tracer = trace.get_tracer("vkp.journaling", tracer_provider=tracer_provider)
        meter = metrics.get_meter("vkp.journaling", meter_provider=meter_provider)
        self.dead_letters = meter.create_counter(
            "vkp.journaling.dead_letters", description="Notes given up on: each is one alert."
        )
        self.journaled_notes = meter.create_counter(
            "vkp.journaling.journaled", description="Notes the EPJ confirmed."
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: the workers, until the service stops."""
        try:
            await asyncio.gather(
                *(
                    repeat(
                        functools.partial(self._work, n),
                        stopping,
                        name="delivery",
                        idle_seconds=self.settings.poll_seconds,
                        backoff=FAILURE_BACKOFF,
                        wake=self._wakes[n],
                    )
                    for n in range(self.settings.workers)
                )
            )
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def notify(self, queues: int = 1) -> None:
        """Work was queued in this process (Enqueue, RetryEntry committed): up to `queues` idle
        workers go and look at once."""
        for _ in range(min(queues, len(self._idle))):
            self._wakes[self._idle.pop()].set()

    def _wake_all(self) -> None:
        self._timer = None
        self.notify(len(self._idle))

    def _wake_at(self, due: datetime) -> None:
        """Idle workers look again when `due` comes (unless a sooner timer is set)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.0, (due - self._clock()).total_seconds())
        if self._timer is not None:
            if self._timer.when() <= at:
                return
            self._timer.cancel()
        self._timer = loop.call_at(at, self._wake_all)

    async def _work(self, worker: int) -> bool:
        """One worker's step; an idle worker joins those `notify` wakes."""
        if worker in self._idle:
            self._idle.remove(worker)
        busy = await self.step(f"{self._owner}-{worker}")
        if not busy:
            self._idle.append(worker)
        return busy

    def _paused(self) -> list[str]:
        now = self._clock()
        self._skip = {m: until for m, until in self._skip.items() if until > now}
        return sorted({*self.breakers.paused(), *self._skip})

    async def step(self, owner: str) -> bool:
        """Leases one due patient queue, in the due municipality served least recently, and
        delivers its due notes; False when none was due."""
        lease = timedelta(seconds=self.settings.lease_seconds)
        paused = self._paused()
        dues = await self.store.dues(paused=paused)
        now = self._clock()
        ready = [m for m, due in dues.items() if due <= now]
        if not ready:
            if dues:
                self._wake_at(min(dues.values()))
            return False
        ready.sort(key=lambda m: self._served.get(m, 0.0))
        claim = await self.store.claim_head(owner, self._clock(), lease, paused=paused, order=ready)
        if claim is None:
            return False
        municipality, patient = claim.municipality, claim.patient
        self._served[municipality] = time.monotonic()
        if len(ready) > 1:
            self.notify()  # more municipalities are due: one more worker
        # Deliver the queue's notes one after the other, a few, well within the lease.
        until = self._clock() + lease / 2
        entry = claim.head
        try:
            for _ in range(NOTES_PER_CLAIM):
                if entry is None or not await self._deliver(entry, owner):
                    break
                if not claim.more or self._clock() >= until:
                    break
                entry = await self.store.head(municipality, patient, self._clock())
        finally:
            await self.store.release(municipality, patient, owner)
        return True

    async def _deliver(self, entry: Entry, owner: str) -> bool:
        """Delivers one entry; True when the queue may go on to its next."""
        endpoint = await self.endpoints.get(entry.municipality)
        if endpoint is not None and endpoint.pull:  # the EPJ fetches its notes: not this worker's
            self._skip[entry.municipality] = self._clock() + PULL_SKIP
            return False
        with self._tracer.start_as_current_span(
            SPAN_NAME,
            context=vendor_trace(entry.traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "vkp.journaling.entry_id": entry.entry_id,
                "vkp.municipality": entry.municipality,
                "vkp.journaling.attempt": entry.attempts + 1,
            },
        ) as span:
            outcome = await self._attempt(entry, endpoint)
            span.set_attribute("vkp.journaling.result", outcome.result.value)
            if outcome.result is Result.JOURNALED:
                return await self._journaled(entry, owner)
            span.set_attribute("vkp.journaling.reason", outcome.reason)
            span.set_status(trace.StatusCode.ERROR, outcome.reason)
            return await self._failed(entry, owner, outcome)

    async def _attempt(self, entry: Entry, endpoint: Endpoint | None) -> Outcome:
        """One attempt: the note made and sent; the breaker told how the EPJ answered."""
        if endpoint is None:  # none yet, or the municipality is suspended: it may come back
            return Outcome(Result.TRANSIENT, Failure.NO_EPJ_ENDPOINT)
        try:
            bundle = render_note(event_pb2.Event.FromString(entry.event), _note_context(entry))
        except Exception as exc:
            log.error("note not rendered", entry_id=entry.entry_id, error_type=type(exc).__name__)
            return Outcome(Result.PERMANENT, Failure.RENDER_FAILED)
        self.breakers.starting(entry.municipality)
        outcome = await self.adapter.deliver(endpoint, bundle)
        if outcome.result is Result.JOURNALED:
            self.breakers.success(entry.municipality)
        elif outcome.result is Result.TRANSIENT:
            self.breakers.failure(entry.municipality)
        return outcome

    async def _journaled(self, entry: Entry, owner: str) -> bool:
        note = note_key(entry.entry_id, 1)
        if not await self.store.journaled(entry, owner, self._clock(), note):
            return False  # the lease ran out and another worker has the queue
        self.journaled_notes.add(1, {"municipality": entry.municipality})
        self._on_journaled()
        return True

    async def _failed(self, entry: Entry, owner: str, outcome: Outcome) -> bool:
        """Retry later, or dead; True when the queue may go on (a note refused for good)."""
        now = self._clock()
        permanent = outcome.result is Result.PERMANENT
        decision = after_failure(
            self._policy,
            attempts=entry.attempts,
            create_time=entry.create_time,
            now=now,
            permanent=permanent,
            backoff=self._retry_backoff.delay,
        )
        if isinstance(decision, Dead):
            if await self.store.dead(entry, owner, now, outcome.reason):
                self.dead_letters.add(1, {"municipality": entry.municipality})
                log.error(
                    "journal note dead",
                    entry_id=entry.entry_id,
                    municipality=entry.municipality,
                    reason=outcome.reason,
                    attempts=decision.attempts,
                )
        else:
            await self.store.retrying(entry, owner, now, decision.at, outcome.reason)
        return permanent
