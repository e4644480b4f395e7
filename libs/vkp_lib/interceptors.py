"""The one server interceptor every service runs: what the runner does around each call.

For every call, in one coroutine:

1. a request id: the caller's `x-request-id`, sent back in the trailing metadata (a new one in
   its place when it is not a valid id); a call that brought none gets one when something refers
   to it (a log line of the call, its failure), sent back too (a call that succeeds without a
   word logged needs none, and makes none);
2. the server span (OpenTelemetry, W3C trace context from the call's metadata), current while
   the servicer runs, so the caller's trace continues in the service;
3. authentication (health checks and reflection excepted): the principal of the call, into a
   context variable the servicer reads (`vkp_lib.auth.current_principal`);
4. the request message(s) checked before the servicer sees them: bytes that do not decode are
   INVALID_ARGUMENT `MALFORMED_REQUEST` (for every method, health and reflection too), a message
   that breaks a field rule of its contract INVALID_ARGUMENT with a BadRequest (protovalidate);
5. the servicer; streamed responses are written from the call's own task (`vkp_lib.streams`);
6. domain errors mapped to status codes with ErrorInfo, methods not implemented yet to
   UNIMPLEMENTED, anything else to INTERNAL without its message;
7. at the end: the status code on the span, and one log line: at INFO when the call failed, at
   DEBUG when it succeeded (traces and metrics count those; a JSON line for every call would
   cost a third of a no-op server's throughput).

What depends only on the method (its span attributes, whether it is open, the tolerant
deserializer, the handler itself) is built at its first call and kept, so a call costs one
dictionary lookup before its own work. gRPC finds handlers by method name alone, so the handler
found for a method's first call is the one for every call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar, Token
from typing import Any, TypeAlias

import grpc
from google.protobuf.descriptor import Descriptor
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from vkp_lib.auth import Authenticator, set_principal
from vkp_lib.errors import ErrorKind, InvalidArgument, VkpError
from vkp_lib.logging import bind_call, get_logger
from vkp_lib.rpc import Context, Handler
from vkp_lib.status import rich_status, status_of, to_grpc
from vkp_lib.streams import write_responses
from vkp_lib.validation import has_rules, validate

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Methods that answer without authentication: probes and tooling.
UNAUTHENTICATED_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
#: Status codes that mark a server span as failed (as OpenTelemetry's gRPC instrumentation
#: does): the service's fault, not the caller's.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

log = get_logger("vkp.rpc")
_rpc_logger = logging.getLogger("vkp.rpc")

Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
#: The parent of the span of a call that carries no trace context: none (a new trace).
_NO_PARENT = otel_context.Context()
#: The metadata of the call being served, as gRPC gave it to the interceptor (the handler runs
#: in the same task, so it reads them here rather than have gRPC convert them again).
_call_metadata: ContextVar[Any] = ContextVar("vkp_call_metadata", default=None)


class _Malformed:
    """What a request that does not decode becomes, so the call fails as the caller's fault."""

    __slots__ = ("expected",)

    def __init__(self, expected: str) -> None:
        self.expected = expected


def _descriptor(deserialize: Callable[[bytes], Any] | None) -> Descriptor | None:
    """The request message type a deserializer (`Message.FromString`) makes, if it says."""
    descriptor = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    return descriptor if isinstance(descriptor, Descriptor) else None


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, returning a `_Malformed` instead of raising on bytes that do not decode (gRPC
    itself would answer UNKNOWN and log a traceback at error level)."""
    if deserialize is None:
        return None
    descriptor = _descriptor(deserialize)
    malformed = _Malformed(descriptor.full_name if descriptor else "the method's request message")

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


class _Call:
    """What one call carries from its start to its end."""

    __slots__ = ("_request_id", "error", "metadata", "rpc", "span", "started", "token")

    def __init__(
        self,
        rpc: str,
        metadata: dict[str, str],
        span: trace.Span,
        token: Token[otel_context.Context] | None,
        started: float,
    ) -> None:
        self.rpc = rpc
        self.metadata = metadata
        self.span = span
        self.token = token
        self.started = started
        self.error: BaseException | None = None
        self._request_id: str | None = None

    @property
    def request_id(self) -> str:
        """The call's request id: the caller's, else one made now (and sent back at the end)."""
        if self._request_id is None:
            self._request_id = os.urandom(16).hex()
        return self._request_id

    def offered(self, request_id: str, context: Context) -> None:
        """The caller's request id, sent back (a new one in its place if it is not valid)."""
        if _REQUEST_ID.match(request_id):
            self._request_id = request_id
        context.set_trailing_metadata(((REQUEST_ID_KEY, self.request_id),))

    def send_back(self, context: Context, *, failed: bool) -> None:
        """Sends the request id back with the answer: a failed call's always (one to quote),
        another's if it has one."""
        if failed or self._request_id is not None:
            context.set_trailing_metadata(((REQUEST_ID_KEY, self.request_id),))


class _Method:
    """What the calls of one method share: built at its first call."""

    __slots__ = ("attributes", "check", "name", "open", "quiet")

    def __init__(self, name: str, request: Descriptor | None) -> None:
        self.name = name
        #: Health checks and reflection: no authentication, field rules or log line on success.
        self.open = name.startswith(UNAUTHENTICATED_PREFIXES)
        self.quiet = self.open
        service, _, method = name.lstrip("/").partition("/")
        self.attributes: dict[str, AttributeValue] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
        }
        #: Field rules only where the request type has some (a type unknown here: checked).
        ruled = not self.open and (request is None or has_rules(request))
        self.check: Callable[[Any], None] = _check if ruled else _refuse_malformed


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Request id and log line, server span, authentication, request checks and error mapping,
    around every call in one coroutine (see the module's doc)."""

    def __init__(
        self,
        domain: str,
        authenticator: Authenticator,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._domain = domain
        self._authenticator = authenticator
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._propagator = propagate.get_global_textmap()
        #: The metadata keys the propagator reads: a call without any has no parent span.
        self._trace_fields = frozenset(self._propagator.fields)
        self._handlers: dict[str, Handler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            found = await continuation(handler_call_details)
            if found is None:
                return None
            request = _descriptor(found.request_deserializer)
            handler = self._handlers[method] = self._wrap(_Method(method, request), found)
        _call_metadata.set(handler_call_details.invocation_metadata)
        return handler

    # -- per call -------------------------------------------------------------------------------

    def _begin(self, method: _Method, context: Context) -> _Call:
        given: Any = _call_metadata.get() or context.invocation_metadata() or ()
        # Every value a str, but those of keys ending in -bin (bytes), which nothing here reads.
        metadata: dict[str, str] = dict(given)
        parent = (
            _NO_PARENT
            if self._trace_fields.isdisjoint(metadata)
            else self._propagator.extract(metadata, _NO_PARENT)
        )
        span = self._tracer.start_span(method.name, parent, SpanKind.SERVER, method.attributes)
        # Made current for the servicer (its spans, its calls' trace context, its log lines'
        # ids); the invalid span (tracing off, no caller's context) has nothing to give.
        token = (
            None
            if span is trace.INVALID_SPAN
            else otel_context.attach(trace.set_span_in_context(span, parent))
        )
        call = _Call(method.name, metadata, span, token, time.perf_counter())
        offered = metadata.get(REQUEST_ID_KEY)
        if offered is not None:
            call.offered(offered, context)
        bind_call(call)
        return call

    async def _fail(self, call: _Call, context: Context, error: BaseException) -> None:
        """Ends the call with the status `error` maps to (by raising the abort), or keeps
        `error` (an abort already made, a cancellation) for the end of the call to name."""
        if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
            await self._abort(call, context, error)
        call.error = error

    async def _abort(self, call: _Call, context: Context, exc: Exception) -> None:
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
            # where it happened (the span's exporter drops the message too).
            log.error(
                "unexpected error",
                error_type=type(exc).__qualname__,
                traceback="".join(traceback.format_tb(exc.__traceback__)),
            )
            call.span.record_exception(exc)
            status = rich_status(
                grpc.StatusCode.INTERNAL, "internal error", reason="INTERNAL", domain=self._domain
            )
        ending = to_grpc(status)
        echo = ((REQUEST_ID_KEY, call.request_id),)
        await context.abort(ending.code, ending.details, (*ending.trailing_metadata, *echo))

    def _end(self, method: _Method, call: _Call, context: Context) -> None:
        error = call.error
        code = context.code()
        if error is not None and not isinstance(error, grpc.aio.AbortError):
            code = (
                grpc.StatusCode.CANCELLED
                if isinstance(error, asyncio.CancelledError)
                else grpc.StatusCode.UNKNOWN
            )
        elif not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.OK
        span = call.span
        failed = code is not grpc.StatusCode.OK
        if failed:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in SERVER_ERRORS:
                span.set_status(Status(StatusCode.ERROR, f"{code}:{context.details() or ''}"))
        span.end()
        if call.token is not None:
            otel_context.detach(call.token)
        level = logging.INFO if failed else logging.DEBUG
        if not (method.quiet and not failed) and _rpc_logger.isEnabledFor(level):
            duration_ms = round((time.perf_counter() - call.started) * 1000, 2)
            log.log(level, "rpc", code=code.name, duration_ms=duration_ms)
        call.send_back(context, failed=failed)  # (an abort has sent it with its status already)

    # -- the handlers, one per method -----------------------------------------------------------

    def _wrap(self, method: _Method, handler: Handler) -> Handler:
        """The handler that runs `handler`'s behaviour inside the call's work."""
        des = _tolerant(handler.request_deserializer)
        ser = handler.response_serializer
        check = method.check
        authenticate = self._authenticator.authenticate

        async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in requests:
                check(request)
                yield request

        if handler.unary_unary:
            uu: Any = handler.unary_unary  # typed for sync contexts; aio passes its own

            async def unary_unary(request: Any, context: Context) -> Any:
                call = self._begin(method, context)
                try:
                    if not method.open:
                        set_principal(await authenticate(method.name, call.metadata))
                    check(request)
                    return await uu(request, context)
                except BaseException as exc:
                    await self._fail(call, context, exc)
                    raise
                finally:
                    self._end(method, call, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, des, ser)
        if handler.stream_unary:
            su: Any = handler.stream_unary

            async def stream_unary(requests: Any, context: Context) -> Any:
                call = self._begin(method, context)
                try:
                    if not method.open:
                        set_principal(await authenticate(method.name, call.metadata))
                    return await su(checked(requests), context)
                except BaseException as exc:
                    await self._fail(call, context, exc)
                    raise
                finally:
                    self._end(method, call, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, des, ser)
        if handler.unary_stream:
            us: Any = handler.unary_stream

            async def unary_stream(request: Any, context: Context) -> None:
                call = self._begin(method, context)
                try:
                    if not method.open:
                        set_principal(await authenticate(method.name, call.metadata))
                    check(request)
                    await write_responses(us(request, context), context)
                except BaseException as exc:
                    await self._fail(call, context, exc)
                    raise
                finally:
                    self._end(method, call, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, des, ser)
        ss: Any = handler.stream_stream

        async def stream_stream(requests: Any, context: Context) -> None:
            call = self._begin(method, context)
            try:
                if not method.open:
                    set_principal(await authenticate(method.name, call.metadata))
                await write_responses(ss(checked(requests), context), context)
            except BaseException as exc:
                await self._fail(call, context, exc)
                raise
            finally:
                self._end(method, call, context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
