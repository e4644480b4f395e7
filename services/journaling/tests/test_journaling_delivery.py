"""Delivery without a server, a database or an EPJ: one patient queue in memory, an adapter that
answers what the test says, and the spans of the attempts in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vkp_journaling.dead_letters import COUNTER, DeadLetters
from vkp_journaling.delivery import PULL_RECHECK, SPAN_NAME, Delivery, vendor_trace
from vkp_journaling.domain.delivery import JOURNALED, Outcome, Result
from vkp_journaling.domain.entry import Change, Claim, Entry, EntryState, Settled
from vkp_journaling.settings import JournalingSettings
from vkp_lib.fhir import Endpoint
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.events import sample_event

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PLACE = "964120005"
PATIENT = TEST_PEOPLE[0].national_id
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SETTINGS = JournalingSettings(max_attempts=3, backoff_base_seconds=1.0, backoff_max_seconds=8.0)
ENDPOINT = Endpoint(municipality=PLACE, base_url="http://epj.invalid/fhir", pull=False)


def entry(entry_id: str = "e-1", *, traceparent: str = TRACEPARENT, attempts: int = 0) -> Entry:
    return Entry(
        entry_id=entry_id,
        municipality=PLACE,
        patient=PATIENT,
        sequence=1,
        kind="home_measurement",
        event_id="evt-0001",
        service_code="DHO",
        vendor_system="vendors/912340007/systems/dispenser-cloud",
        client_id="dosetta-dispenser",
        event=sample_event("home_measurement").SerializeToString(deterministic=True),
        traceparent=traceparent,
        occurred_time=NOW,
        receive_time=NOW,
        state=EntryState.QUEUED,
        attempts=attempts,
        next_attempt_time=None,
        last_error_reason="",
        create_time=NOW,
        update_time=NOW,
        journaled_time=None,
        note_identifier="",
    )


class Queue:
    """One patient queue: its waiting entries, and what delivery wrote."""

    def __init__(self, *waiting: Entry) -> None:
        self.waiting = list(waiting)
        self.written: list[tuple[str, str, dict[str, Any]]] = []
        self.leased = False
        self.left: list[str] = []

    async def dues(self, *, paused: Sequence[str] = ()) -> dict[str, datetime]:
        if not self.waiting or PLACE in paused or self.leased:
            return {}
        return {PLACE: self.waiting[0].next_attempt_time or NOW}

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
    ) -> list[Claim]:
        due = await self.dues(paused=paused)
        if PLACE not in due or due[PLACE] > now:
            return []
        self.leased = True
        ready = list(
            itertools.takewhile(lambda e: (e.next_attempt_time or now) <= now, self.waiting)
        )
        ready = ready[:notes]
        head, behind = (ready[0], tuple(ready[1:])) if ready else (None, ())
        return [Claim(PLACE, PATIENT, head, len(self.waiting) > 1, behind)]

    async def head(self, municipality: str, patient: str, now: datetime) -> Entry | None:
        return next((e for e in self.waiting if (e.next_attempt_time or now) <= now), None)

    async def release(self, municipality: str, patient: str, owner: str) -> None:
        self.leased = False

    async def left_pull(self, municipality: str, now: datetime) -> None:
        self.left.append(municipality)

    async def settle(
        self,
        entry: Entry,
        owner: str,
        now: datetime,
        change: Change,
        *,
        release: bool = True,
        go_on: int = 0,
    ) -> Settled:
        self.written.append((entry.entry_id, change.state.value, _values(change)))
        self.waiting = [e for e in self.waiting if e.entry_id != entry.entry_id]
        if change.state is EntryState.RETRYING:
            self.waiting.insert(0, dataclasses.replace(entry, next_attempt_time=change.at))
        head = await self.head(PLACE, PATIENT, now) if go_on else None
        if head is None and release:
            self.leased = False
        return Settled(kept=True, notes=() if head is None else (head,))


def _values(change: Change) -> dict[str, Any]:
    """What the test looks at of a change: the note, or the reason (and when to retry)."""
    if change.state is EntryState.JOURNALED:
        return {"note": change.note}
    if change.state is EntryState.RETRYING:
        return {"at": change.at, "reason": change.reason}
    return {"reason": change.reason}


class Endpoints:
    def __init__(self, endpoint: Endpoint | None = ENDPOINT) -> None:
        self.endpoint = endpoint

    async def get(self, municipality: str) -> Endpoint | None:
        return self.endpoint


class Adapter:
    """Answers each delivery with the next outcome; records the span current during the call."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[trace.SpanContext] = []

    async def deliver(self, endpoint: Endpoint, bundle: dict[str, Any]) -> Outcome:
        self.calls.append(trace.get_current_span().get_span_context())
        return self.outcomes.pop(0)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def delivery(
    queue: Queue, adapter: Adapter, provider: TracerProvider, endpoints: Endpoints | None = None
) -> Delivery:
    return Delivery(
        queue,
        endpoints or Endpoints(),
        adapter,
        SETTINGS,
        clock=lambda: NOW,
        tracer_provider=provider,
    )


async def test_an_attempt_is_a_span_under_the_vendors_stored_traceparent_and_the_epj_call_under_it(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    adapter = Adapter(JOURNALED)
    assert await delivery(Queue(entry()), adapter, provider).step()
    (span,) = exporter.get_finished_spans()
    assert span.name == SPAN_NAME
    assert span.kind is trace.SpanKind.CONSUMER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert adapter.calls == [span.context]  # the EPJ call is made inside the attempt's span
    assert PATIENT not in str(dict(span.attributes or {}))


async def test_an_entry_without_a_traceparent_starts_a_trace_of_its_own(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    assert await delivery(Queue(entry(traceparent="")), Adapter(JOURNALED), provider).step()
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert not vendor_trace("")  # an empty context: nothing to continue


async def test_a_transient_failure_is_retried_later_and_holds_the_patients_queue(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    queue = Queue(entry("e-1"), entry("e-2"))
    adapter = Adapter(Outcome(Result.TRANSIENT, "EPJ_ERROR_503"))
    assert await delivery(queue, adapter, provider).step()
    ((entry_id, state, values),) = queue.written
    assert (entry_id, state, values["reason"]) == ("e-1", "RETRYING", "EPJ_ERROR_503")
    assert NOW + timedelta(seconds=0.5) <= values["at"] <= NOW + timedelta(seconds=1)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert (span.attributes or {})["vkp.journaling.reason"] == "EPJ_ERROR_503"


async def test_a_failed_attempt_stops_the_notes_read_with_the_claim_from_being_sent(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    queue = Queue(entry("e-1"), entry("e-2"), entry("e-3"))
    adapter = Adapter(Outcome(Result.TRANSIENT, "EPJ_ERROR_503"), JOURNALED, JOURNALED)
    assert await delivery(queue, adapter, provider).step()
    assert len(adapter.calls) == 1  # e-2 waits until e-1 is journaled (or dead)
    assert [(i, s) for i, s, _ in queue.written] == [("e-1", "RETRYING")]
    assert not queue.leased


async def test_a_queue_whose_turn_is_over_is_handed_back_before_its_next_note_is_sent(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    queue = Queue(entry("e-1"), entry("e-2"), entry("e-3"))
    clock = [NOW]

    class SlowEpj(Adapter):
        async def deliver(self, endpoint: Endpoint, bundle: dict[str, Any]) -> Outcome:
            clock[0] += timedelta(seconds=SETTINGS.lease_seconds)  # past half the lease
            return await super().deliver(endpoint, bundle)

    adapter = SlowEpj(JOURNALED, JOURNALED, JOURNALED)
    worker = Delivery(
        queue, Endpoints(), adapter, SETTINGS, clock=lambda: clock[0], tracer_provider=provider
    )
    assert await worker.step()
    assert [(i, s) for i, s, _ in queue.written] == [("e-1", "JOURNALED")]
    assert len(adapter.calls) == 1  # e-2 and e-3 wait for the next claim
    assert not queue.leased


async def test_a_note_refused_for_good_is_dead_and_the_queue_goes_on_to_the_next(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    queue = Queue(entry("e-1"), entry("e-2"))
    adapter = Adapter(Outcome(Result.PERMANENT, "EPJ_REJECTED_400"), JOURNALED)
    assert await delivery(queue, adapter, provider).step()
    assert [(i, s) for i, s, _ in queue.written] == [("e-1", "DEAD"), ("e-2", "JOURNALED")]
    assert queue.written[1][2] == {"note": "e-2/1"}


async def test_the_last_allowed_attempt_failing_makes_the_entry_dead(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    queue = Queue(entry(attempts=SETTINGS.max_attempts - 1))
    adapter = Adapter(Outcome(Result.TRANSIENT, "EPJ_TIMEOUT"))
    assert await delivery(queue, adapter, provider).step()
    assert [(s, v["reason"]) for _, s, v in queue.written] == [("DEAD", "EPJ_TIMEOUT")]


async def test_a_dead_note_is_one_dead_letter_counted_by_its_municipality(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    queue = Queue(entry("e-1"), entry("e-2"))
    adapter = Adapter(Outcome(Result.PERMANENT, "EPJ_REJECTED_400"), JOURNALED)
    worker = Delivery(
        queue,
        Endpoints(),
        adapter,
        SETTINGS,
        clock=lambda: NOW,
        tracer_provider=provider,
        dead_letters=DeadLetters(meters),
    )
    assert await worker.step()
    data = reader.get_metrics_data()
    assert data is not None
    (point,) = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == COUNTER
        for point in metric.data.data_points
    ]
    assert isinstance(point, NumberDataPoint)
    assert (dict(point.attributes or {}), point.value) == ({"municipality": PLACE}, 1)
    meters.shutdown()


async def test_a_municipality_without_an_endpoint_waits_for_one_without_calling_any_epj(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    queue, adapter = Queue(entry()), Adapter()
    assert await delivery(queue, adapter, provider, Endpoints(None)).step()
    assert [(s, v["reason"]) for _, s, v in queue.written] == [("RETRYING", "NO_EPJ_ENDPOINT")]
    assert adapter.calls == []


async def test_an_epj_that_pulls_is_left_alone(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    queue, adapter = Queue(entry()), Adapter()
    pulling = Endpoints(dataclasses.replace(ENDPOINT, pull=True))
    worker = delivery(queue, adapter, provider, pulling)
    assert await worker.step()
    assert (queue.written, adapter.calls, exporter.get_finished_spans()) == ([], [], ())
    assert not await worker.step()  # none of the municipality's queues is claimed again


async def test_a_municipality_that_pulls_no_more_is_delivered_to_once_looked_up_again(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    now = [NOW]
    queue, adapter = Queue(entry()), Adapter(JOURNALED)
    endpoints = Endpoints(dataclasses.replace(ENDPOINT, pull=True))
    worker = Delivery(
        queue, endpoints, adapter, SETTINGS, clock=lambda: now[0], tracer_provider=provider
    )
    assert await worker.step()  # claimed, found pulling, handed back untouched
    endpoints.endpoint = ENDPOINT  # the registry says push from now on
    now[0] = NOW + PULL_RECHECK / 2
    assert not await worker.step()  # not looked up again yet
    assert queue.left == []
    now[0] = NOW + PULL_RECHECK
    assert await worker.step()
    assert queue.left == [PLACE]  # its READ notes wait again, its queues are due
    assert [s for _, s, _ in queue.written] == ["JOURNALED"]


# -- fairness and waiting for work -------------------------------------------------------------

OTHER_PLACE = "971130008"


class Places(Queue):
    """Queues in two municipalities, each always due: what matters is the order claims ask for."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[str] = []

    async def dues(self, *, paused: Sequence[str] = ()) -> dict[str, datetime]:
        return {m: NOW for m in (PLACE, OTHER_PLACE) if m not in paused}

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
    ) -> list[Claim]:
        ranks = rank or {}
        first = min(await self.dues(paused=paused), key=lambda m: (ranks.get(m, 0.0), m))
        self.claimed.append(first)
        return [Claim(first, PATIENT, dataclasses.replace(entry(), municipality=first), False)]


async def test_claims_go_to_the_due_municipality_served_least_recently(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    places = Places()
    worker = delivery(places, Adapter(*[JOURNALED] * 4), provider)
    for _ in range(4):
        assert await worker.step()
    assert places.claimed == [PLACE, OTHER_PLACE, PLACE, OTHER_PLACE]


async def test_idle_workers_wait_for_work_queued_here_and_for_a_retry_falling_due_not_the_poll(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    queue = Queue()
    adapter = Adapter(Outcome(Result.TRANSIENT, "EPJ_ERROR_503"), JOURNALED)
    slow_poll = JournalingSettings(
        workers=2, poll_seconds=600, backoff_base_seconds=0.2, backoff_max_seconds=0.2
    )
    journaled = asyncio.Event()
    worker = Delivery(
        queue, Endpoints(), adapter, slow_poll, tracer_provider=provider, on_journaled=journaled.set
    )
    stopping = asyncio.Event()
    running = asyncio.create_task(worker.run(stopping))
    try:
        await asyncio.sleep(0.1)  # both workers found nothing and wait
        queue.waiting.append(dataclasses.replace(entry(), create_time=datetime.now(UTC)))
        worker.notify()
        async with asyncio.timeout(10):  # far sooner than the poll
            await journaled.wait()  # failed once, then retried when due
    finally:
        stopping.set()
        await running
    assert [state for _, state, _ in queue.written] == ["RETRYING", "JOURNALED"]
