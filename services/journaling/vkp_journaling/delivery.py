"""Delivery: patient queues are leased and each queue's head delivered to the municipality's EPJ,
one note at a time per patient, in sequence order; many patients' queues at once.

A dispatcher (a `vkp_lib.tasks.repeat` loop) leases due queues, as many as there are free places
for deliveries in flight (`workers`), in one transaction; each leased queue is served by a task
of its own, so the waits on the EPJ and the database overlap. A queue's task delivers its due
notes one after another: each attempt's outcome is written in one transaction with what follows,
the queue's next head (the lease kept) or the queue given up, at most `NOTES_PER_CLAIM` notes and
half a lease, and then hands the queue back. The dispatcher runs again at once while it finds
work and a place is free; when nothing is due it waits to be woken: by `notify` (an Enqueue or
RetryEntry committed in this process), by a queue's task ending, by a timer at the earliest time
a queue falls due (a retry, an expired lease), or after `poll_seconds` (work another replica
took in). A failed attempt is retried after an exponential backoff with jitter, or the entry is
dead (domain.delivery.after_failure); a breaker per municipality pauses a failing EPJ
(breaker.py).

Claims are fair across municipalities: the due municipalities take turns, the one this process
served least recently first, and in each the queue due the longest. So one municipality's
backlog, or its EPJ's outage, holds up no other.

The trace goes on: each attempt is a span (kind CONSUMER) whose parent is the stored traceparent
of the vendor's SubmitEvent call, so the attempt, and the EPJ call under it (the adapter's client
span), are in the vendor's trace (whose id ingest's audit record of the event also carries). A
parent rather than a link: one entry is one message, delivered on its own (OpenTelemetry's
messaging conventions allow the creation context as the parent then), and a link alone would
leave the delivery in a trace of its own that a search by the vendor's trace id does not find;
the sampling decision the vendor's call made holds for its delivery too. An entry without a
traceparent starts a trace of its own.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vkp_journaling.breaker import Breakers
from vkp_journaling.dead_letters import DeadLetters
from vkp_journaling.domain.delivery import (
    Dead,
    Failure,
    Outcome,
    Result,
    RetryPolicy,
    after_failure,
)
from vkp_journaling.domain.entry import Change, Claim, Entry, EntryState, Settled
from vkp_journaling.journaled import JournaledNotes
from vkp_journaling.render import NoteContext, note_key, render_entry_note
from vkp_journaling.settings import JournalingSettings
from vkp_lib.fhir import Endpoint
from vkp_lib.logging import get_logger
from vkp_lib.tasks import Backoff, Waker, repeat

log = get_logger("vkp.journaling.delivery")
#: The span of one delivery attempt.
SPAN_NAME = "deliver journal note"
#: How often a municipality found pulling its notes is looked up again (a cached registry read):
#: until then none of its queues is claimed, and when it pulls no more its notes are delivered.
PULL_RECHECK = timedelta(seconds=30)
#: The most notes delivered from one claimed queue before it is handed back (fairness).
NOTES_PER_CLAIM = 10
#: The dispatcher's waits while the database is away.
FAILURE_BACKOFF = Backoff(base=0.1, cap=5.0)
_PROPAGATOR = TraceContextTextMapPropagator()


class QueueStore(Protocol):
    """What delivery needs of the store (vkp_journaling.store.JournalStore)."""

    async def dues(self, *, paused: Sequence[str] = ()) -> dict[str, datetime]: ...

    async def claim_many(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        paused: Sequence[str] = (),
        rank: Mapping[str, float] | None = None,
        limit: int = 1,
        notes: int = 1,
    ) -> list[Claim]: ...

    async def release(self, municipality: str, patient: str, owner: str) -> None: ...

    async def settle(
        self,
        entry: Entry,
        owner: str,
        now: datetime,
        change: Change,
        *,
        release: bool = True,
        go_on: int = 0,
    ) -> Settled: ...

    async def left_pull(self, municipality: str, now: datetime) -> None: ...


class Endpoints(Protocol):
    """Municipalities' EPJ endpoints (vkp_lib.fhir.EndpointDirectory)."""

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
        dead_letters: DeadLetters | None = None,
        journaled: JournaledNotes | None = None,
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
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._clock = clock
        self._process = uuid.uuid4().hex
        self._claims = itertools.count(1)
        #: Municipalities whose EPJ pulls its notes: never claimed; when to look them up again.
        self._pulling: dict[str, datetime] = {}
        self._on_journaled = on_journaled
        #: The dispatcher's wake-up (now, or at the next due time); the queues being served.
        self._waker = Waker()
        self._serving: set[asyncio.Task[None]] = set()
        self._stopping = False
        #: When this process last claimed a queue in each municipality (time.monotonic()).
        self._served: dict[str, float] = {}
        self._tracer = trace.get_tracer("vkp.journaling", tracer_provider=tracer_provider)
        self.dead_letters = dead_letters or DeadLetters(meter_provider)
        self.journaled = journaled or JournaledNotes(meter_provider)

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: the dispatcher, until the service stops; then the queues being
        served finish the note in hand and are handed back."""
        try:
            await repeat(
                self._dispatch,
                stopping,
                name="delivery",
                idle_seconds=self.settings.poll_seconds,
                backoff=FAILURE_BACKOFF,
                wake=self._waker.event,
            )
            self._stopping = True
            if self._serving:
                await asyncio.wait(self._serving)
        finally:
            self._stopping = True
            self._waker.close()
            for task in self._serving:
                task.cancel()
            if self._serving:
                await asyncio.wait(self._serving)

    def notify(self, queues: int = 1) -> None:
        """Work was queued in this process (Enqueue, RetryEntry committed): the dispatcher looks
        at once."""
        self._waker.set()

    def _paused(self) -> list[str]:
        return sorted({*self.breakers.paused(), *self._pulling})

    async def _recheck_pulling(self) -> None:
        """Municipalities found pulling are looked up again now and then: one that pulls no
        more has its READ notes waiting again and its queues due, to be delivered."""
        now = self._clock()
        for municipality, at in list(self._pulling.items()):
            if at > now:
                continue
            endpoint = await self.endpoints.get(municipality)
            if endpoint is not None and endpoint.pull:
                self._pulling[municipality] = now + PULL_RECHECK
                continue
            del self._pulling[municipality]
            await self.store.left_pull(municipality, now)

    async def _claim(self) -> list[tuple[Claim, str]]:
        """Leases due queues, as many as places are free, the due municipalities taking turns
        (the one served least recently first); each with its lease's owner."""
        free = self.settings.workers - len(self._serving)
        if free <= 0:
            return []  # a queue's task ending wakes the dispatcher
        if self._pulling:
            await self._recheck_pulling()
        paused = self._paused()
        owner = f"{self._process}-{next(self._claims)}"
        claims = await self.store.claim_many(
            owner,
            self._clock(),
            self._lease,
            paused=paused,
            rank=self._served,
            limit=free,
            notes=NOTES_PER_CLAIM,
        )
        if not claims:
            dues = await self.store.dues(paused=paused)
            if dues:
                # Look again when the next queue falls due (unless a sooner timer is set).
                self._waker.at((min(dues.values()) - self._clock()).total_seconds())
            return []
        served = time.monotonic()
        for claim in claims:
            self._served[claim.municipality] = served
        return [(claim, owner) for claim in claims]

    async def _dispatch(self) -> bool:
        """The dispatcher's step: due queues leased, a task serving each; False when none."""
        claimed = await self._claim()
        for claim, owner in claimed:
            task = asyncio.create_task(self._serve(claim, owner), name="delivery queue")
            self._serving.add(task)
            task.add_done_callback(self._served_queue)
        return bool(claimed)

    def _served_queue(self, task: asyncio.Task[None]) -> None:
        self._serving.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("delivery failed", error_type=type(error).__qualname__)
        self._waker.set()  # a place is free

    async def step(self) -> bool:
        """Leases due queues and serves them to the end (the dispatcher's work, awaited: for
        tests); False when none was due."""
        claimed = await self._claim()
        await asyncio.gather(*(self._serve(claim, owner) for claim, owner in claimed))
        return bool(claimed)

    async def _serve(self, claim: Claim, owner: str) -> None:
        """Delivers a leased queue's due notes one after the other, a few, well within the
        lease, and hands the queue back (with the last note's outcome, in its transaction).

        A note goes to the EPJ once the one before it is confirmed there, while that one's
        outcome is still being written: the EPJ sees each patient's notes in order, and a crash
        before the write only means a repeat, which the note's conditional creates make
        harmless. The next notes come with the claim, and with the write of the last of them."""
        until = self._clock() + self._lease / 2
        notes = collections.deque(claim.notes)
        held, delivered = True, 0
        writing: asyncio.Task[Settled] | None = None
        try:
            while notes:
                attempted = await self._attempt_note(notes.popleft())
                if writing is not None:
                    done, writing = writing, None
                    if not (await done).kept:
                        held = False  # the lease ran out: another worker has the queue
                        return
                if attempted is None:
                    return  # nothing written: handed back as it is
                delivered += 1
                go_on = (
                    attempted.change.state is not EntryState.RETRYING
                    and delivered < NOTES_PER_CLAIM
                    and self._clock() < until
                    and not self._stopping
                )
                if not go_on:
                    # A retry holds the queue, else its turn is over: the write hands the queue
                    # back, and the notes read with the claim are not sent (the next may only
                    # go once this one is journaled or dead, under a lease).
                    await self._write(attempted, owner)
                    held = False
                    return
                if notes:
                    writing = asyncio.create_task(self._write(attempted, owner, release=False))
                    continue
                settled = await self._write(attempted, owner, go_on=NOTES_PER_CLAIM - delivered)
                held = settled.kept and bool(settled.notes)
                notes.extend(settled.notes)
        finally:
            if writing is not None:  # never left running; its error is the queue's
                await asyncio.wait([writing])
                if not writing.cancelled():
                    writing.exception()
            if held:
                await self.store.release(claim.municipality, claim.patient, owner)

    async def _attempt_note(self, entry: Entry) -> _Attempted | None:
        """Delivers one entry: what the attempt makes of it, in the attempt's span; None when
        the municipality's EPJ pulls its notes (nothing to write)."""
        endpoint = await self.endpoints.get(entry.municipality)
        if endpoint is not None and endpoint.pull:  # the EPJ fetches its notes: not this worker's
            self._pulling[entry.municipality] = self._clock() + PULL_RECHECK
            return None
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
            if outcome.result is not Result.JOURNALED:
                span.set_attribute("vkp.journaling.reason", outcome.reason)
                span.set_status(trace.StatusCode.ERROR, outcome.reason)
            return _Attempted(entry, self._change(entry, outcome), otel_context.get_current())

    async def _attempt(self, entry: Entry, endpoint: Endpoint | None) -> Outcome:
        """One attempt: the note made and sent; the breaker told how the EPJ answered."""
        if endpoint is None:  # none yet, or the municipality is suspended: it may come back
            return Outcome(Result.TRANSIENT, Failure.NO_EPJ_ENDPOINT)
        try:
            bundle = await self.note_of(entry)
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

    async def note_of(self, entry: Entry) -> dict[str, Any]:
        """The FHIR Bundle of an entry's note (raises when the event makes none): what a worker
        pushes, and what an EPJ that pulls fetches (ListPending)."""
        return render_entry_note(entry.kind, entry.event, _note_context(entry))

    def _change(self, entry: Entry, outcome: Outcome) -> Change:
        """Journaled; else retry later (the queue waits for it), or dead (it goes on)."""
        if outcome.result is Result.JOURNALED:
            return Change(EntryState.JOURNALED, note=note_key(entry.entry_id, 1))
        decision = after_failure(
            self._policy,
            attempts=entry.attempts,
            create_time=entry.create_time,
            now=self._clock(),
            permanent=outcome.result is Result.PERMANENT,
            backoff=self._retry_backoff.delay,
        )
        if isinstance(decision, Dead):
            return Change(EntryState.DEAD, reason=outcome.reason)
        return Change(EntryState.RETRYING, reason=outcome.reason, at=decision.at)

    async def _write(
        self, attempted: _Attempted, owner: str, *, release: bool = True, go_on: int = 0
    ) -> Settled:
        """The attempt's outcome written (in the attempt's trace context), with what follows."""
        entry, change = attempted.entry, attempted.change
        token = otel_context.attach(attempted.context)
        try:
            settled = await self.store.settle(
                entry, owner, self._clock(), change, release=release, go_on=go_on
            )
        finally:
            otel_context.detach(token)
        if not settled.kept:  # the lease ran out and another worker has the queue
            return settled
        if change.state is EntryState.JOURNALED:
            self.journaled.journaled(entry.municipality)
            self._on_journaled()
        elif change.state is EntryState.DEAD:
            self.dead_letters.dead(
                entry.entry_id, entry.municipality, change.reason, attempts=entry.attempts + 1
            )
        return settled


@dataclass(frozen=True)
class _Attempted:
    """An attempt made: the entry, what came of it, and the attempt's trace context."""

    entry: Entry
    change: Change
    context: Context
