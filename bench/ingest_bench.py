"""Ingest, durable, auth on: SubmitEvent at 16 in flight, and SubmitEvents of 500 back to back,
into the hub's lone ingest (the registry seeded with the sandbox and the audit service beside
it; no journaling to relay to, so this is ingest's own work, not a delivery pipeline sharing the
two cores), against the no-op RPC measured in the same run. Every request is encoded before the
clock starts, and each answer is checked for a receipt."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from events import BATCH, SUBMIT_EVENT, SUBMIT_EVENTS, Events
from hub import BUSY, Hub
from load import Load, closed_loop, raw_call

from vkp.ingest.v1 import ingest_pb2 as pb


@dataclass(frozen=True)
class IngestFigures:
    unary: Load
    batches: Load


async def _measure(
    hub: Hub, seconds: float, concurrency: int, unary_rate_bound: float, batch_rate_bound: float
) -> IngestFigures:
    events = Events(BUSY, "bench-ingest")
    metadata = hub.vendor_metadata()
    warm_up = 50
    # As many requests as the bound on the rate (the no-op server's) could use, and a few more.
    unary = events.unary(warm_up + int(unary_rate_bound * seconds * 1.2) + concurrency)
    batches = events.batches(2 + int(batch_rate_bound * seconds / BATCH * 1.2))
    async with grpc.aio.insecure_channel(hub.ingest_alone.address) as channel:
        submit = raw_call(channel, SUBMIT_EVENT)
        check = pb.SubmitEventResponse.FromString(await submit(unary[0], metadata=metadata))
        if not check.receipt.name:
            raise RuntimeError("ingest answered SubmitEvent without a receipt")
        one = await closed_loop(
            submit, unary[1:], seconds, concurrency, metadata=metadata, warm_up=warm_up
        )
        submit_many = raw_call(channel, SUBMIT_EVENTS)
        answer = pb.SubmitEventsResponse.FromString(
            await submit_many(batches[0], metadata=metadata)
        )
        refused = [r for r in answer.results if not r.HasField("receipt")]
        if refused:
            raise RuntimeError(f"ingest refused {len(refused)} of a batch: {refused[0].error}")
        many = await closed_loop(
            submit_many, batches[1:], seconds, 1, metadata=metadata, items_per_call=BATCH
        )
    return IngestFigures(one, many)


def measure_ingest(
    hub: Hub, seconds: float, concurrency: int, unary_rate_bound: float
) -> IngestFigures:
    """SubmitEvent at `concurrency` in flight, then SubmitEvents of 500 one after the other;
    `unary_rate_bound` (the no-op server's requests/s) sizes the encoded requests."""
    # Batches for 15,000 events/s (1.5 x the target): a faster ingest ends the run sooner.
    return asyncio.run(_measure(hub, seconds, concurrency, unary_rate_bound, 15_000))
