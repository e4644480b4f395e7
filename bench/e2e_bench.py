"""Event to journaled, the whole hub: a steady offered rate of SubmitEvent (an open loop: each
event leaves at its time, answered or not) from the sandbox vendor of home measurements, for the
sandbox patients of the two push municipalities in turn, through ingest, its outbox relay,
journaling and the FHIR adapter into the EPJ simulator. Then the drain: until every accepted
event has its note, or the hub has stored no note for `Drain.stall_seconds` (it stopped making
progress), or the cap has passed. Then the simulator's notes against the receipts: acceptance to
journaled p50/p99 over every accepted event (a late note counts with its own latency), the
events still not journaled when the drain ended (lost, when it ended for want of progress), and
duplicated notes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import notes
from events import SUBMIT_EVENT, Events, entry_id
from hub import BUSY, OTHER, Hub
from load import Offered, raw_call, steady

from vkp.ingest.v1 import ingest_pb2 as pb
from vkp_lib.sandbox import SandboxMunicipality


@dataclass(frozen=True)
class Drain:
    """When to stop waiting for notes: no note stored for `stall_seconds`, or `max_seconds`
    in all; the simulator asked every `poll_seconds`."""

    stall_seconds: float
    max_seconds: float
    poll_seconds: float


@dataclass(frozen=True)
class SteadyFigures:
    offered_rate: float
    achieved_rate: float
    accepted: int
    refused: int
    #: Entry id -> receive time (epoch seconds) of each accepted event.
    taken: dict[str, float]
    journaled: notes.Journaled
    drained: notes.Drained
    client_cpu: float
    max_lag_seconds: float
    #: Transaction Bundles the simulator took meanwhile: one per delivery attempt.
    epj_transactions: int


def interleaved(municipalities: Sequence[SandboxMunicipality], count: int) -> list[bytes]:
    """`count` encoded SubmitEventRequests, the municipalities' events in turn."""
    makers = [Events(m, "bench-e2e") for m in municipalities]
    return [
        pb.SubmitEventRequest(event=makers[i % len(makers)].next()).SerializeToString()
        for i in range(count)
    ]


def accepted(offered: Offered) -> dict[str, float]:
    """Entry id -> receive time of every accepted event."""
    result: dict[str, float] = {}
    for sent in offered.answered:
        assert sent.response is not None
        receipt = pb.SubmitEventResponse.FromString(sent.response).receipt
        result[entry_id(receipt)] = receipt.receive_time.ToNanoseconds() / 1e9
    return result


async def offer_and_follow(
    hub: Hub,
    requests: list[bytes],
    rate: float,
    drain: Drain,
    municipality: SandboxMunicipality | None = None,
    already: int = 0,
) -> SteadyFigures:
    """Offers `requests` at `rate`, drains their notes (on top of `already` notes of
    `municipality`, or of all), and compares."""
    async with hub.epj() as epj:
        posted = await notes.transactions(epj)
    async with grpc.aio.insecure_channel(hub.address("ingest")) as channel:
        offered = await steady(
            raw_call(channel, SUBMIT_EVENT), requests, rate, metadata=hub.vendor_metadata()
        )
    taken = accepted(offered)
    async with hub.epj() as epj:
        drained = await notes.drain(
            epj,
            already + len(taken),
            stall_seconds=drain.stall_seconds,
            max_seconds=drain.max_seconds,
            municipality=municipality,
            poll_seconds=drain.poll_seconds,
        )
        stored = await notes.stored(epj, municipality)
        posted = await notes.transactions(epj) - posted
    return SteadyFigures(
        offered_rate=rate,
        achieved_rate=offered.rate,
        accepted=len(taken),
        refused=len(offered.sent) - len(taken),
        taken=taken,
        journaled=notes.compare(taken, stored),
        drained=drained,
        client_cpu=offered.client_cpu,
        max_lag_seconds=offered.max_lag_seconds,
        epj_transactions=posted,
    )


def measure_e2e(hub: Hub, rate: float, seconds: float, drain: Drain) -> SteadyFigures:
    """`rate` events/s for `seconds` into the whole hub, then the drain."""
    requests = interleaved((BUSY, OTHER), max(2, int(rate * seconds)))

    async def run() -> SteadyFigures:
        async with hub.epj() as epj:
            await notes.clear(epj)
        return await offer_and_follow(hub, requests, rate, drain)

    return asyncio.run(run())
