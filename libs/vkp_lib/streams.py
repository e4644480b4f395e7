"""Streaming responses sent from the call's own task, so a client that leaves early is quiet.

Given an async generator, grpc.aio iterates it and sends each response itself. When the client
cancels while a response is being sent, the call's task ends there and the generator is left
suspended at its `yield`; the event loop closes it later, from a new task with a copy of the
context. Whatever the generator holds across a `yield` is then released in another contextvars
Context: an attached OpenTelemetry context fails to detach, an error-level traceback for a normal
cancellation.

The runner's call interceptor (`vkp_lib.interceptors`) therefore gives grpc a coroutine for every
response-streaming method: `write_responses` takes each response from the servicer's generator
and writes it, and when the call ends while writing it throws the cancellation into the
generator where it waits, within the same task, as if it had been cancelled there; its context
managers exit where they were entered. Unary responses never come here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator
from typing import Any

import grpc

from vkp_lib.rpc import Context

#: How long a call whose response could not be written waits for gRPC to say the client has
#: gone (it then cancels the call); a write that failed for another reason is raised after it.
WRITE_FAILURE_NOTICE_SECONDS = 1.0


async def _cancel(responses: AsyncGenerator[Any, Any]) -> None:
    """Ends a response generator suspended at its `yield` as a cancellation would: it sees
    CancelledError there; if it yields again regardless, it is closed."""
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await responses.athrow(asyncio.CancelledError())
    await responses.aclose()


async def write_responses(responses: Any, context: Context) -> None:
    """Writes every response of `responses` (an async generator; a coroutine that writes with
    `context.write` is awaited) to the call, from the call's task."""
    if not inspect.isasyncgen(responses):
        await responses
        return
    async for response in responses:
        try:
            await context.write(response)
        except BaseException as exc:  # cancelled while sending (the client went away), or worse
            await _cancel(responses)
            if isinstance(exc, grpc.aio.InternalError):
                # The transport refused the write: the call ended under it, nearly always
                # because the client went away. gRPC says so a moment later and cancels this
                # task; wait for that, so the call ends as cancelled, not as a failed write.
                await asyncio.sleep(WRITE_FAILURE_NOTICE_SECONDS)
            raise
