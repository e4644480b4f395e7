"""The load client: requests encoded before the clock starts, sent as bytes (no protobuf work on
the clock), and the client's own CPU share measured beside every figure, so it is seen not to be
the limit.

- `closed_loop`: `concurrency` callers, each sending its next request as soon as the last is
  answered, for `seconds` (or until the encoded requests run out).
- `steady`: an open loop at a fixed offered rate (each request sent at its time, whether the
  earlier ones are answered or not), for the whole-hub rows.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc

#: A unary call taking encoded request bytes and giving encoded response bytes.
RawCall = Callable[..., Awaitable[bytes]]


def raw_call(channel: grpc.aio.Channel, method: str) -> RawCall:
    """A unary call of `method` (`/pkg.Service/Method`) that sends and returns bytes as they are."""
    return channel.unary_unary(method)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, nearest rank; inf counts as a value (a request
    that never finished), nan when there is none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class ClientCpu:
    """The CPU this process used (every thread: grpc's too) over a stretch of wall time, as a
    share of one core."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def share(self) -> float:
        wall = time.perf_counter() - self._wall
        return (time.process_time() - self._cpu) / wall if wall > 0 else math.nan


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (h2load)."""
    times = os.times()
    return times.children_user + times.children_system


@dataclass(frozen=True)
class Load:
    """What one load run gave: calls answered, over how long, each call's latency (seconds)."""

    calls: int
    seconds: float
    latencies: Sequence[float]
    client_cpu: float
    #: Items per call (500 for a batch of 500), for the rate of items.
    items_per_call: int = 1

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else math.nan

    @property
    def item_rate(self) -> float:
        return self.rate * self.items_per_call

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000


def merged(loads: Sequence[Load]) -> Load:
    """Several runs of one load as one: their calls over their time together."""
    seconds = sum(load.seconds for load in loads)
    return Load(
        calls=sum(load.calls for load in loads),
        seconds=seconds,
        latencies=[x for load in loads for x in load.latencies],
        client_cpu=sum(load.client_cpu * load.seconds for load in loads) / seconds,
        items_per_call=loads[0].items_per_call,
    )


async def closed_loop(
    call: RawCall,
    requests: Sequence[bytes],
    seconds: float,
    concurrency: int,
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    warm_up: int = 0,
    items_per_call: int = 1,
) -> Load:
    """`concurrency` callers over `requests` in turn (the first `warm_up` off the clock); a
    request is used once. Stops at `seconds` or when the requests run out."""
    for request in requests[:warm_up]:
        await call(request, metadata=metadata)
    latencies: list[float] = []
    position = warm_up
    cpu = ClientCpu()
    began = time.perf_counter()
    deadline = began + seconds

    async def caller() -> None:
        nonlocal position
        while position < len(requests) and time.perf_counter() < deadline:
            request = requests[position]
            position += 1
            start = time.perf_counter()
            await call(request, metadata=metadata)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return Load(len(latencies), elapsed, latencies, cpu.share(), items_per_call)


@dataclass(frozen=True)
class Sent:
    """One request of a steady load: when it was due and sent, and its answer (or error)."""

    index: int
    sent_at: float  # time.time()
    response: bytes | None
    error: str | None


@dataclass(frozen=True)
class Offered:
    sent: Sequence[Sent]
    seconds: float
    client_cpu: float
    #: How late the latest request left after its due time (the client falling behind).
    max_lag_seconds: float

    @property
    def answered(self) -> list[Sent]:
        return [s for s in self.sent if s.response is not None]

    @property
    def rate(self) -> float:
        return len(self.sent) / self.seconds if self.seconds > 0 else math.nan


async def steady(
    call: RawCall,
    requests: Sequence[bytes],
    rate: float,
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    max_in_flight: int = 512,
) -> Offered:
    """Sends `requests` at `rate` per second, each at its due time (an open loop: a slow answer
    does not delay the next request), at most `max_in_flight` unanswered."""
    results: list[Sent] = []
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    max_lag = 0.0

    async def send(index: int, request: bytes) -> None:
        sent_at = time.time()
        try:
            response = await call(request, metadata=metadata)
            results.append(Sent(index, sent_at, response, None))
        except grpc.aio.AioRpcError as exc:
            results.append(Sent(index, sent_at, None, exc.code().name))
        finally:
            slots.release()

    cpu = ClientCpu()
    began = time.perf_counter()
    for index, request in enumerate(requests):
        due = began + index / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        await slots.acquire()
        max_lag = max(max_lag, time.perf_counter() - due)
        task = asyncio.create_task(send(index, request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sending = time.perf_counter() - began
    if tasks:
        await asyncio.gather(*tasks)
    return Offered(sorted(results, key=lambda s: s.index), sending, cpu.share(), max_lag)
