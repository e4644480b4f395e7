"""The server interceptors every service runs, outermost first:

0. streamed responses written from the call's own task (`vkp_lib.streams`),
1. OpenTelemetry (the gRPC instrumentation; W3C trace context from the call metadata),
2. request id and one structured log line per call,
3. error mapping: domain errors to status codes with ErrorInfo; anything unexpected to INTERNAL,
4. authentication: the principal of the call, into a context variable,
5. validation: a request that does not decode is refused (MALFORMED_REQUEST), and the field
   rules of the contracts (protovalidate) are checked on every request message.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import structlog

from vkp_lib.auth import Authenticator, set_principal
from vkp_lib.errors import ErrorKind, InvalidArgument, VkpError
from vkp_lib.logging import get_logger
from vkp_lib.rpc import Context, Handler
from vkp_lib.status import rich_status, status_of, to_grpc
from vkp_lib.validation import validate

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Methods that answer without authentication: probes and tooling.
UNAUTHENTICATED_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

log = get_logger("vkp.rpc")
_rpc_logger = logging.getLogger("vkp.rpc")

Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"


def _wrap(
    handler: Handler,
    around_unary: Callable[[Any, Context], Awaitable[Any]],
    around_stream: Callable[[Any, Context], AsyncIterator[Any]],
    *,
    check: Callable[[Any], None] | None = None,
    deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """A handler whose behaviour runs inside `around_*`, whatever its streaming shape.

    `around_unary(call, context)` gets `call`, a coroutine factory; `around_stream(call,
    context)` gets `call`, a factory of the async iterator of responses. `check` sees each
    request message as the behaviour is called (inside `around_*`) and may raise;
    `deserializer` replaces the handler's own.
    """

    def responses(behavior: Any, request: Any, context: Context) -> Any:
        result = behavior(request, context)
        if inspect.isasyncgen(result):
            return result

        async def single() -> AsyncIterator[Any]:  # a coroutine that writes with context.write
            await result
            return
            yield  # pragma: no cover - makes this an async generator

        return single()

    def one(request: Any) -> Any:
        if check is not None:
            check(request)
        return request

    async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield one(request)

    def many(requests: Any) -> Any:
        return requests if check is None else checked(requests)

    des = deserializer or handler.request_deserializer
    ser = handler.response_serializer
    if handler.unary_unary:
        b: Any = handler.unary_unary  # typed for sync contexts; aio passes its own

        async def uu(request: Any, context: Context) -> Any:
            return await around_unary(lambda: b(one(request), context), context)

        return grpc.unary_unary_rpc_method_handler(uu, des, ser)
    if handler.stream_unary:
        b2: Any = handler.stream_unary

        async def su(requests: Any, context: Context) -> Any:
            return await around_unary(lambda: b2(many(requests), context), context)

        return grpc.stream_unary_rpc_method_handler(su, des, ser)
    if handler.unary_stream:
        b3 = handler.unary_stream

        async def us(request: Any, context: Context) -> AsyncIterator[Any]:
            def call() -> Any:
                return responses(b3, one(request), context)

            async for response in around_stream(call, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(us, des, ser)
    b4 = handler.stream_stream

    async def ss(requests: Any, context: Context) -> AsyncIterator[Any]:
        def call() -> Any:
            return responses(b4, many(requests), context)

        async for response in around_stream(call, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(ss, des, ser)


async def _through(call: Callable[[], Awaitable[Any]], context: Any) -> Any:
    return await call()


async def _through_stream(call: Callable[[], AsyncIterator[Any]], context: Any) -> Any:
    async for response in call():
        yield response


def _status_code(context: Context, error: BaseException | None) -> str:
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


class RequestLogInterceptor(grpc.aio.ServerInterceptor):
    """Gives every call a request id (the caller's `x-request-id`, or a new one), sends it back in
    the trailing metadata (sending initial metadata early costs a separate write: a third of a
    no-op RPC's throughput), binds it to the logs of the call, and logs one line when it ends: at
    INFO when it failed, at DEBUG when it succeeded (traces and metrics count those; a JSON line
    for every call would cost a third of a no-op server's throughput)."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        offered = dict(handler_call_details.invocation_metadata or ()).get(REQUEST_ID_KEY)
        offered = offered if isinstance(offered, str) else ""
        quiet = method.startswith(UNAUTHENTICATED_PREFIXES)

        def begin(context: Context) -> tuple[str, float]:
            request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
            structlog.contextvars.bind_contextvars(request_id=request_id, rpc=method)
            return request_id, time.perf_counter()

        def end(context: Context, start: float, error: BaseException | None) -> None:
            code = _status_code(context, error)
            level = logging.DEBUG if code == "OK" else logging.INFO
            if (quiet and code == "OK") or not _rpc_logger.isEnabledFor(level):
                return
            duration_ms = round((time.perf_counter() - start) * 1000, 2)
            log.log(level, "rpc", code=code, duration_ms=duration_ms)

        async def around_unary(call: Callable[[], Awaitable[Any]], context: Any) -> Any:
            request_id, start = begin(context)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            error: BaseException | None = None
            try:
                return await call()
            except BaseException as exc:
                error = exc
                raise
            finally:
                end(context, start, error)

        async def around_stream(call: Callable[[], AsyncIterator[Any]], context: Any) -> Any:
            request_id, start = begin(context)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            error: BaseException | None = None
            try:
                async for response in call():
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                end(context, start, error)

        return _wrap(handler, around_unary, around_stream)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to their status code with ErrorInfo (domain = the service), methods not
    implemented yet to UNIMPLEMENTED, and any other exception to INTERNAL without its message."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def _abort(self, context: Context, exc: Exception) -> None:
        if isinstance(exc, VkpError):
            status = status_of(exc, self._domain)
            if exc.kind is ErrorKind.INTERNAL:
                log.error("internal error", reason=exc.reason)
        elif isinstance(exc, NotImplementedError):
            status = rich_status(
                grpc.StatusCode.UNIMPLEMENTED,
                "not implemented yet",
                reason="NOT_IMPLEMENTED",
                domain=self._domain,
            )
        else:
            # The message of an unexpected exception may quote input: log only its type and
            # where it happened.
            log.error(
                "unexpected error",
                error_type=type(exc).__qualname__,
                traceback="".join(traceback.format_tb(exc.__traceback__)),
            )
            status = rich_status(
                grpc.StatusCode.INTERNAL, "internal error", reason="INTERNAL", domain=self._domain
            )
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        echo = ((REQUEST_ID_KEY, request_id),) if isinstance(request_id, str) else ()
        ending = to_grpc(status)
        await context.abort(ending.code, ending.details, (*ending.trailing_metadata, *echo))

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None

        async def around_unary(call: Callable[[], Awaitable[Any]], context: Any) -> Any:
            try:
                return await call()
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._abort(context, exc)

        async def around_stream(call: Callable[[], AsyncIterator[Any]], context: Any) -> Any:
            try:
                async for response in call():
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._abort(context, exc)

        return _wrap(handler, around_unary, around_stream)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call but health checks and reflection; the principal goes into a
    context variable the servicer reads (`vkp_lib.auth.current_principal`)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNAUTHENTICATED_PREFIXES):
            return handler
        metadata = {
            k: v for k, v in handler_call_details.invocation_metadata or () if isinstance(v, str)
        }

        async def authenticate() -> None:
            set_principal(await self._authenticator.authenticate(method, metadata))

        async def around_unary(call: Callable[[], Awaitable[Any]], context: Any) -> Any:
            await authenticate()
            return await call()

        async def around_stream(call: Callable[[], AsyncIterator[Any]], context: Any) -> Any:
            await authenticate()
            async for response in call():
                yield response

        return _wrap(handler, around_unary, around_stream)


class _Malformed:
    """What a request that does not decode becomes, so the call fails as the caller's fault."""

    __slots__ = ("expected",)

    def __init__(self, expected: str) -> None:
        self.expected = expected


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, returning a `_Malformed` instead of raising on bytes that do not decode (gRPC
    itself would answer UNKNOWN and log a traceback at error level)."""
    if deserialize is None:
        return None
    message_type = getattr(deserialize, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    malformed = _Malformed(getattr(descriptor, "full_name", "the method's request message"))

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError, or what the upb parser raises on deeper nonsense
            return malformed

    return parse


def _refuse_malformed(request: Any) -> None:
    if isinstance(request, _Malformed):
        log.warning("malformed request")
        raise InvalidArgument(
            "MALFORMED_REQUEST", f"the request does not decode as a {request.expected}"
        )


def _check(request: Any) -> None:
    _refuse_malformed(request)
    validate(request)


class ValidationInterceptor(grpc.aio.ServerInterceptor):
    """Checks every request message before the servicer sees it: bytes that do not decode are
    answered INVALID_ARGUMENT `MALFORMED_REQUEST` (for every method, health and reflection too),
    and a message that breaks a field rule of its contract INVALID_ARGUMENT with a BadRequest
    (raised here, mapped by the error interceptor outside)."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        open_method = handler_call_details.method.startswith(UNAUTHENTICATED_PREFIXES)
        return _wrap(
            handler,
            _through,
            _through_stream,
            check=_refuse_malformed if open_method else _check,
            deserializer=_tolerant(handler.request_deserializer),
        )
