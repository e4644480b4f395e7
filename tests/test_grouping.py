"""The one batching mechanism (`vkp_lib.grouping.Batcher`): callers that arrive while a batch is
handled go together in the next, each gets its own outcome, and closing drains then refuses."""

from __future__ import annotations

import asyncio

import pytest

from vkp_lib.errors import Unavailable
from vkp_lib.grouping import Batcher, GroupCommit


class Recorder:
    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay

    async def handle(self, requests: list[int]) -> list[int | BaseException]:
        self.batches.append(list(requests))
        await asyncio.sleep(self.delay)
        return [ValueError(f"odd {r}") if r % 2 else r * 10 for r in requests]


def batcher(recorder: Recorder, max_size: int = 100, linger: float = 0.0) -> Batcher[int, int]:
    return Batcher(
        recorder.handle,
        max_size=max_size,
        linger_seconds=linger,
        closed=lambda: RuntimeError("closed"),
    )


async def test_callers_arriving_during_a_batch_share_the_next_one() -> None:
    recorder = Recorder()
    grouped = batcher(recorder)
    first = asyncio.ensure_future(grouped.submit(0))
    await asyncio.sleep(0)  # the first batch is taken
    rest = [asyncio.ensure_future(grouped.submit(n)) for n in (2, 4, 6)]
    assert await first == 0
    assert await asyncio.gather(*rest) == [20, 40, 60]
    assert recorder.batches == [[0], [2, 4, 6]]


async def test_each_caller_gets_its_own_error_and_the_others_their_results() -> None:
    grouped = batcher(Recorder(), linger=0.01)
    outcomes = await asyncio.gather(*(grouped.submit(n) for n in range(4)), return_exceptions=True)
    assert outcomes[0::2] == [0, 20]
    assert [str(o) for o in outcomes[1::2]] == ["odd 1", "odd 3"]


async def test_a_batch_takes_requests_up_to_its_size() -> None:
    recorder = Recorder()
    grouped = batcher(recorder, max_size=3, linger=0.01)
    await asyncio.gather(*(grouped.submit(n) for n in range(0, 14, 2)))
    assert [len(b) for b in recorder.batches] == [3, 3, 1]


async def test_a_failing_handler_fails_every_caller_of_its_batch_only() -> None:
    calls = 0

    async def handle(requests: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return requests

    grouped: Batcher[int, int] = Batcher(handle, max_size=2, closed=lambda: RuntimeError())
    outcomes = await asyncio.gather(*(grouped.submit(n) for n in range(3)), return_exceptions=True)
    assert [type(o).__name__ for o in outcomes[:2]] == ["ConnectionError", "ConnectionError"]
    assert outcomes[2] == 2


async def test_a_caller_that_left_is_not_handled() -> None:
    recorder = Recorder()
    grouped = batcher(recorder, linger=0.02)
    leaving = asyncio.ensure_future(grouped.submit(2))
    staying = asyncio.ensure_future(grouped.submit(4))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == 40
    assert recorder.batches == [[4]]


async def test_close_handles_what_waits_then_refuses() -> None:
    recorder = Recorder()
    grouped = batcher(recorder)
    waiting = [asyncio.ensure_future(grouped.submit(n)) for n in (0, 2)]
    await asyncio.sleep(0)
    await grouped.close()
    assert [w.result() for w in waiting] == [0, 20]
    with pytest.raises(RuntimeError, match="closed"):
        await grouped.submit(4)


async def test_a_group_commit_refuses_with_its_reason_once_the_service_stops() -> None:
    async def commit(requests: list[int]) -> list[int]:
        return requests

    group = GroupCommit(commit, size=lambda _: 1, max_size=10, stopping_reason="INGEST_STOPPING")
    stopping = asyncio.Event()
    runner = asyncio.ensure_future(group.run(stopping))
    assert await group.submit(7) == 7
    stopping.set()
    await runner
    with pytest.raises(Unavailable) as caught:
        await group.submit(8)
    assert caught.value.reason == "INGEST_STOPPING"
