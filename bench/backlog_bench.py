"""Journaling with a large backlog in one municipality, the whole hub.

The backlog goes straight into journaling's queue: Enqueue with a hub service token, batches of
500 as ingest's relay sends them, 4 in flight. The row is journaling's ("100,000 entries
waiting"), and an Enqueue is answered only once its entries are committed, so when the last
answer has come journaling holds them all: the window cannot open while ingest's relay is still
forwarding the backlog (round 1's did, so it measured the relay and journaling together), and
no status of 100,000 events needs polling. (Ingest's relay is fair across municipalities by its
own tests; the e2e row drives it.)

1. An empty queue: `empty_events` entries of the busy municipality; its delivery rate is the
   notes stored per second from the first of them to the last (the simulator's times). They
   are all delivered (drained) before the next step.
2. The fill: `backlog` more entries; Enqueue's rate while the queue grows, and the latency of its
   first and last batches, are in the details.
3. The window, at once (delivery has been under way since the first batch): for `window`
   seconds, the busy municipality's notes counted at its start and end; meanwhile another
   municipality, with no backlog, is offered `other_rate` events/s through ingest (a vendor's
   whole path). Their notes are drained as in the e2e row, and their acceptance to journaled
   p50/p99 taken over all of them, each split by its journal entry (GetEntry) into ingest and
   its relay (receive time to the entry's create time) and journaling's own part (create time
   to journaled time): the latter is what a journaling-only driver measures.

The row: the busy municipality's rate during the window against the empty queue's; the other
municipality's p99.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import grpc
import notes
from e2e_bench import Drain, SteadyFigures, interleaved, offer_and_follow
from events import BATCH, ENQUEUE, GET_ENTRY, Events
from hub import BUSY, OTHER, Hub
from idle_bench import cpu_seconds
from load import percentile, raw_call

from vkp.journaling.v1 import journaling_pb2 as jpb

#: Enqueue calls in flight while filling.
FILL_IN_FLIGHT = 4


@dataclass(frozen=True)
class Fill:
    """Entries put into journaling's queue: how many, how fast, each batch's latency in order."""

    entries: list[str]
    seconds: float
    batch_seconds: list[float]

    @property
    def rate(self) -> float:
        return len(self.entries) / self.seconds if self.seconds > 0 else math.nan

    def batch_p50_ms(self, part: slice) -> float:
        """The median latency of a part of the batches (in the order they were sent)."""
        return percentile(self.batch_seconds[part], 50) * 1000


@dataclass(frozen=True)
class Split:
    """The other municipality's latencies split at journaling's door, p50/p99 in ms."""

    relay_p50_ms: float
    relay_p99_ms: float
    journaling_p50_ms: float
    journaling_p99_ms: float


@dataclass(frozen=True)
class BacklogFigures:
    empty_events: int
    empty_rate: float
    empty_drained: notes.Drained
    #: Journaling's CPU per note delivered (µs, all its threads): from the empty queue, and
    #: during the window. Unlike the rates, the machine's other work hardly changes these.
    empty_cpu_us: float
    backlog_cpu_us: float
    #: Journaling's CPU during the window, a share of one core: near 1, journaling's own work
    #: is the limit; far below, it waits (on its database, the EPJ, ...).
    backlog_cpu_share: float
    fill: Fill
    #: Entries of the busy municipality still waiting when the window opened.
    waiting_at_start: int
    backlog_rate: float
    window_seconds: float
    other: SteadyFigures
    split: Split

    @property
    def ratio(self) -> float:
        return self.backlog_rate / self.empty_rate if self.empty_rate else math.nan


async def _enqueue(hub: Hub, events: Events, count: int, in_flight: int) -> Fill:
    """`count` new entries into journaling, in batches of up to 500, `in_flight` at once; every
    one must be created (committed) by the time this returns."""
    sizes = [BATCH] * (count // BATCH) + ([count % BATCH] if count % BATCH else [])
    requests = [events.entries(size) for size in sizes]  # encoded before the clock
    metadata = hub.service_metadata()
    latencies = [math.nan] * len(requests)
    queue = iter(enumerate(requests))
    async with grpc.aio.insecure_channel(hub.address("journaling")) as channel:
        enqueue = raw_call(channel, ENQUEUE)

        async def sender() -> None:
            for index, (ids, request) in queue:
                began = time.perf_counter()
                answer = jpb.EnqueueResponse.FromString(await enqueue(request, metadata=metadata))
                latencies[index] = time.perf_counter() - began
                created = sum(1 for result in answer.results if result.created)
                if created != len(ids):
                    raise RuntimeError(f"Enqueue created {created} of {len(ids)} new entries")

        began = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
        seconds = time.perf_counter() - began
    return Fill([i for ids, _ in requests for i in ids], seconds, latencies)


def _journaling_cpu(hub: Hub) -> float:
    return cpu_seconds(hub.processes["journaling"].process.pid)


def _us_per_note(cpu: float, count: int) -> float:
    return cpu / count * 1e6 if count > 0 else math.nan


async def _empty_queue(
    hub: Hub, events: Events, count: int, drain: Drain
) -> tuple[float, notes.Drained, float]:
    """`count` entries into an empty queue, all delivered: notes per second, first to last;
    journaling's CPU per note from the last Enqueue's answer on."""
    fill = await _enqueue(hub, events, count, 1)
    ids = set(fill.entries)
    cpu = _journaling_cpu(hub)
    async with hub.epj() as epj:
        already = await notes.count(epj, BUSY)
        drained = await notes.drain(
            epj,
            count,
            stall_seconds=drain.stall_seconds,
            max_seconds=drain.max_seconds,
            municipality=BUSY,
            poll_seconds=drain.poll_seconds,
        )
        cpu = _journaling_cpu(hub) - cpu
        times = sorted(when for entry, when in await notes.stored(epj, BUSY) if entry in ids)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    rate = (len(times) - 1) / span if span > 0 else math.nan
    return rate, drained, _us_per_note(cpu, drained.stored - already)


async def _busy_count(hub: Hub) -> tuple[int, float]:
    async with hub.epj() as epj:
        return await notes.count(epj, BUSY), time.perf_counter()


async def _split(hub: Hub, other: SteadyFigures) -> Split:
    """Each journaled event of the other municipality by its journal entry: receive time to
    create time (ingest, its relay, Enqueue) and create time to journaled time (journaling)."""
    metadata = hub.admin_metadata()
    relay: list[float] = []
    journaling: list[float] = []
    async with grpc.aio.insecure_channel(hub.address("journaling")) as channel:
        get_entry = raw_call(channel, GET_ENTRY)
        names = iter(other.taken.items())

        async def reader() -> None:
            for entry_id, received in names:
                request = jpb.GetEntryRequest(name=f"entries/{entry_id}").SerializeToString()
                entry = jpb.GetEntryResponse.FromString(
                    await get_entry(request, metadata=metadata)
                ).entry
                if not entry.HasField("journaled_time"):
                    continue
                created = entry.create_time.ToNanoseconds() / 1e9
                relay.append(created - received)
                journaling.append(entry.journaled_time.ToNanoseconds() / 1e9 - created)

        await asyncio.gather(*(reader() for _ in range(8)))

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000

    return Split(ms(relay, 50), ms(relay, 99), ms(journaling, 50), ms(journaling, 99))


async def _run(
    hub: Hub,
    backlog: int,
    empty_events: int,
    window: float,
    other_rate: float,
    drain: Drain,
) -> BacklogFigures:
    busy = Events(BUSY, "bench-backlog")
    others = interleaved((OTHER,), max(2, int(other_rate * window)))
    async with hub.epj() as epj:
        await notes.clear(epj)
    empty_rate, empty_drained, empty_cpu_us = await _empty_queue(hub, busy, empty_events, drain)
    fill = await _enqueue(hub, busy, backlog, FILL_IN_FLIGHT)
    cpu = _journaling_cpu(hub)
    before, began = await _busy_count(hub)
    backlog_cpu_us = backlog_cpu_share = math.nan

    async def delivery_rate() -> float:
        nonlocal backlog_cpu_us, backlog_cpu_share
        await asyncio.sleep(window)
        after, ended = await _busy_count(hub)
        # The other municipality's notes are delivered in the window too: counted in.
        async with hub.epj() as epj:
            others = await notes.count(epj, OTHER)
        used = _journaling_cpu(hub) - cpu
        backlog_cpu_us = _us_per_note(used, after - before + others)
        backlog_cpu_share = used / (time.perf_counter() - began)
        return (after - before) / (ended - began)

    rate, other = await asyncio.gather(
        delivery_rate(), offer_and_follow(hub, others, other_rate, drain, OTHER)
    )
    return BacklogFigures(
        empty_events=empty_events,
        empty_rate=empty_rate,
        empty_drained=empty_drained,
        empty_cpu_us=empty_cpu_us,
        backlog_cpu_us=backlog_cpu_us,
        backlog_cpu_share=backlog_cpu_share,
        fill=fill,
        waiting_at_start=backlog - (before - empty_drained.stored),
        backlog_rate=rate,
        window_seconds=window,
        other=other,
        split=await _split(hub, other),
    )


def measure_backlog(
    hub: Hub,
    backlog: int,
    empty_events: int,
    window: float,
    other_rate: float,
    drain: Drain,
) -> BacklogFigures:
    return asyncio.run(_run(hub, backlog, empty_events, window, other_rate, drain))
