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


async def unary_load(hub: Hub, seconds: float, concurrency: int, rate_bound: float) -> Load:
    """SubmitEvent at `concurrency` in flight; `rate_bound` (the no-op server's requests/s)
    sizes the encoded requests."""
    metadata = hub.vendor_metadata()
    warm_up = 50 if seconds >= 0.5 else 10  # the smoke run's are short
    # As many requests as the bound on the rate could use, and a few more.
    requests = Events(BUSY, "bench-ingest").unary(
        warm_up + int(rate_bound * seconds * 1.2) + concurrency
    )
    async with grpc.aio.insecure_channel(hub.ingest_alone.address) as channel:
        submit = raw_call(channel, SUBMIT_EVENT)
        check = pb.SubmitEventResponse.FromString(await submit(requests[0], metadata=metadata))
        if not check.receipt.name:
            raise RuntimeError("ingest answered SubmitEvent without a receipt")
        return await closed_loop(
            submit, requests[1:], seconds, concurrency, metadata=metadata, warm_up=warm_up
        )


async def batch_load(hub: Hub, seconds: float, rate_bound: float = 15_000) -> Load:
    """SubmitEvents of 500, one after the other; encoded for `rate_bound` events/s (1.5 x the
    target: a faster ingest ends the run sooner)."""
    metadata = hub.vendor_metadata()
    batches = Events(BUSY, "bench-ingest").batches(2 + int(rate_bound * seconds / BATCH * 1.2))
    async with grpc.aio.insecure_channel(hub.ingest_alone.address) as channel:
        submit_many = raw_call(channel, SUBMIT_EVENTS)
        answer = pb.SubmitEventsResponse.FromString(
            await submit_many(batches[0], metadata=metadata)
        )
        refused = [r for r in answer.results if not r.HasField("receipt")]
        if refused:
            raise RuntimeError(f"ingest refused {len(refused)} of a batch: {refused[0].error}")
        return await closed_loop(
            submit_many, batches[1:], seconds, 1, metadata=metadata, items_per_call=BATCH
        )


def measure_ingest(
    hub: Hub, seconds: float, concurrency: int, unary_rate_bound: float
) -> IngestFigures:
    """SubmitEvent at `concurrency` in flight, then SubmitEvents of 500 one after the other."""

    async def both() -> IngestFigures:
        one = await unary_load(hub, seconds, concurrency, unary_rate_bound)
        return IngestFigures(one, await batch_load(hub, seconds))

    return asyncio.run(both())
