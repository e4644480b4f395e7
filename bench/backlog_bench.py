"""Journaling with a large backlog in one municipality, the whole hub.

1. An empty queue: `empty_events` events for the busy municipality in batches; its delivery
   rate is the notes stored per second from its first note to its last (the simulator's times).
2. The backlog: `backlog` more events for it, SubmitEvents of 500 with 4 in flight (not timed;
   the fill's own rate is in the details).
3. Once its delivery is under way (its next note stored), for `window` seconds: the busy
   municipality's delivery rate (its notes counted at the window's start and end), while
   another municipality, with no backlog of its own, is offered a steady `other_rate` events/s;
   their acceptance to journaled p50/p99 once they are in (or `drain_seconds` have passed: a
   note still missing counts as never).

The row: the rate with the backlog against the empty queue's; the other municipality's p99.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import notes
from e2e_bench import SteadyFigures, interleaved, offer_and_follow
from events import BATCH, SUBMIT_EVENTS, Events, entry_id
from hub import BUSY, OTHER, Hub
from load import RawCall, raw_call

from vkp.ingest.v1 import ingest_pb2 as pb


@dataclass(frozen=True)
class BacklogFigures:
    empty_events: int
    empty_rate: float
    backlog: int
    fill_rate: float
    backlog_rate: float
    window_seconds: float
    other: SteadyFigures

    @property
    def ratio(self) -> float:
        return self.backlog_rate / self.empty_rate if self.empty_rate else float("nan")


async def _submit(
    submit_many: RawCall,
    events: Events,
    count: int,
    metadata: tuple[tuple[str, str], ...],
    in_flight: int,
) -> dict[str, float]:
    """`count` events in batches of up to 500, `in_flight` batches at once; entry id -> receive
    time of each accepted one."""
    taken: dict[str, float] = {}
    sizes = [BATCH] * (count // BATCH) + ([count % BATCH] if count % BATCH else [])
    queue = iter(sizes)

    async def sender() -> None:
        for size in queue:
            answer = await submit_many(events.batch(size), metadata=metadata)
            for result in pb.SubmitEventsResponse.FromString(answer).results:
                if result.HasField("receipt"):
                    received = result.receipt.receive_time.ToNanoseconds() / 1e9
                    taken[entry_id(result.receipt)] = received

    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return taken


async def _under_way(hub: Hub, seconds: float) -> None:
    """Waits (at most `seconds`) for the busy municipality's next note: the backlog's delivery
    has begun."""
    async with hub.epj() as epj:
        await notes.wait_for(epj, await notes.count(epj, BUSY) + 1, seconds, BUSY)


async def _delivery_rate(hub: Hub, seconds: float) -> float:
    """The busy municipality's notes stored per second over the next `seconds`."""
    async with hub.epj() as epj:
        before, began = await notes.count(epj, BUSY), time.perf_counter()
        await asyncio.sleep(seconds)
        after, ended = await notes.count(epj, BUSY), time.perf_counter()
    return (after - before) / (ended - began)


async def _run(
    hub: Hub,
    backlog: int,
    empty_events: int,
    window: float,
    other_rate: float,
    drain_seconds: float,
) -> BacklogFigures:
    metadata = hub.vendor_metadata()
    busy = Events(BUSY, "bench-backlog")
    async with hub.epj() as epj:
        await notes.clear(epj)
    async with grpc.aio.insecure_channel(hub.address("ingest")) as channel:
        submit_many = raw_call(channel, SUBMIT_EVENTS)
        empty = await _submit(submit_many, busy, empty_events, metadata, 1)
        async with hub.epj() as epj:
            await notes.wait_for(epj, len(empty), max(drain_seconds, 10.0), BUSY)
            times = sorted(when for entry, when in await notes.stored(epj, BUSY) if entry in empty)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        empty_rate = (len(times) - 1) / span if span > 0 else float("nan")
        began = time.perf_counter()
        filled = await _submit(submit_many, busy, backlog, metadata, 4)
        fill_rate = len(filled) / (time.perf_counter() - began)
    await _under_way(hub, drain_seconds)
    others = interleaved((OTHER,), max(2, int(other_rate * window)))
    rate, other = await asyncio.gather(
        _delivery_rate(hub, window),
        offer_and_follow(hub, others, other_rate, drain_seconds, OTHER),
    )
    return BacklogFigures(len(empty), empty_rate, len(filled), fill_rate, rate, window, other)


def measure_backlog(
    hub: Hub,
    backlog: int,
    empty_events: int,
    window: float,
    other_rate: float,
    drain_seconds: float,
) -> BacklogFigures:
    return asyncio.run(_run(hub, backlog, empty_events, window, other_rate, drain_seconds))
