"""Streaming responses sent from the call's own task, so a client that leaves early is quiet.

Given an async generator, grpc.aio iterates it and sends each response itself. When the client
cancels while a response is being sent, the call's task ends there and the generator is left
suspended at its `yield`; the event loop closes it later, from a new task with a copy of the
context. Whatever the generator chain holds across a `yield` is then released in another
contextvars Context: the OpenTelemetry server interceptor's attached context fails to detach, an
error-level traceback for a normal cancellation.

`ResponseStreamInterceptor`, the outermost interceptor, gives grpc a coroutine instead: it takes
each response from the generator it wraps (OpenTelemetry's) and writes it, and when the call ends
while writing it throws the cancellation into that generator where it waits, within the same
task, as if it had been cancelled there; its context managers exit where they were entered.
(Generators further in that their caller does not close are still finalized by the event loop;
the hub's own interceptors hold nothing across a `yield` that needs the same Context.)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from vkp_lib.rpc import Context, Handler

Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"

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


class ResponseStreamInterceptor(grpc.aio.ServerInterceptor):
    """Sends the responses of response-streaming methods from the call's own task (see the
    module's doc); unary responses pass through untouched."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_stream:
            us: Any = handler.unary_stream  # typed for sync contexts; aio passes its own

            async def unary_stream(request: Any, context: Context) -> None:
                await write_responses(us(request, context), context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, des, ser)
        ss: Any = handler.stream_stream

        async def stream_stream(requests: Any, context: Context) -> None:
            await write_responses(ss(requests, context), context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
