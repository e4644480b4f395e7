"""The server runner in-process: error mapping, request ids, the server span, the auth hook,
readiness, tasks."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vkp.common.v1.common_pb2 import NationalId
from vkp.ingest.v1.ingest_pb2 import SubmitEventRequest
from vkp_lib.auth import AnonymousAuthenticator, Principal, PrincipalKind, current_principal
from vkp_lib.errors import FieldViolation, InvalidArgument, Unauthenticated
from vkp_lib.health import LIVENESS
from vkp_lib.interceptors import REQUEST_ID_KEY
from vkp_lib.logging import get_logger
from vkp_lib.rpc import Context, Handler
from vkp_lib.runner import BackgroundTask, ReadinessCheck, Server, Service
from vkp_lib.settings import RuntimeSettings
from vkp_lib.status import bad_request, error_info
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.validation import has_rules

SERVICE = "vkp.test.v1.ProbeService"
S = wrappers_pb2.StringValue
SETTINGS = RuntimeSettings(
    shutdown_drain_seconds=0, shutdown_grace_seconds=1, readiness_interval_seconds=0.05
)
PATIENT = TEST_PEOPLE[0]


async def echo(request: S, context: Context) -> S:
    return S(value=request.value)


async def invalid(request: S, context: Context) -> S:
    raise InvalidArgument(
        "INVALID_NATIONAL_ID",
        "patient.id is not a national id",
        metadata={"field": "patient.id"},
        violations=[FieldViolation("patient.id", "check digits do not match", "INVALID")],
    )


async def crash(request: S, context: Context) -> S:
    raise RuntimeError(f"lookup failed for {request.value}")


async def who_am_i(request: S, context: Context) -> S:
    return S(value=current_principal().client_id)


async def trace_of(request: S, context: Context) -> S:
    """The trace id and span id current in the servicer, as hex."""
    current = trace.get_current_span().get_span_context()
    return S(value=f"{current.trace_id:032x}-{current.span_id:016x}")


async def log_something(request: S, context: Context) -> S:
    get_logger("vkp.test.probe").info("working on it")
    return S()


async def count(request: S, context: Context) -> AsyncIterator[S]:
    for i in range(3):
        yield S(value=str(i))


async def count_by_writing(request: S, context: Context) -> None:
    for i in range(2):
        await context.write(S(value=f"w{i}"))


# Handlers whose messages carry field rules (vkp.common.v1.NationalId: 11 digits).
async def count_ids(requests: AsyncIterator[NationalId], context: Context) -> S:
    return S(value=str(len([r async for r in requests])))


async def echo_ids(
    requests: AsyncIterator[NationalId], context: Context
) -> AsyncIterator[NationalId]:
    async for request in requests:
        yield request


async def repeat_id(request: NationalId, context: Context) -> AsyncIterator[NationalId]:
    for _ in range(2):
        yield request


def _register(server: grpc.aio.Server, _: None) -> None:
    unary = {
        "Echo": echo,
        "Invalid": invalid,
        "Crash": crash,
        "WhoAmI": who_am_i,
        "TraceOf": trace_of,
        "Log": log_something,
    }
    handlers: dict[str, Handler] = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=S.FromString, response_serializer=S.SerializeToString
        )
        for name, fn in unary.items()
    }
    for name, fn in (("Count", count), ("CountByWriting", count_by_writing)):
        handlers[name] = grpc.unary_stream_rpc_method_handler(
            fn, request_deserializer=S.FromString, response_serializer=S.SerializeToString
        )
    n = NationalId
    handlers["CountIds"] = grpc.stream_unary_rpc_method_handler(
        count_ids, request_deserializer=n.FromString, response_serializer=S.SerializeToString
    )
    handlers["EchoIds"] = grpc.stream_stream_rpc_method_handler(
        echo_ids, request_deserializer=n.FromString, response_serializer=n.SerializeToString
    )
    handlers["RepeatId"] = grpc.unary_stream_rpc_method_handler(
        repeat_id, request_deserializer=n.FromString, response_serializer=n.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


class StaticTokenAuthenticator:
    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        if metadata.get("authorization") != "Bearer good":
            raise Unauthenticated("INVALID_TOKEN", "the token is not valid")
        return Principal(PrincipalKind.VENDOR, client_id="vendor-system-1")


Started = tuple[Server[None], grpc.aio.Channel]


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[Started]]]:
    servers: list[Server[None]] = []
    channels: list[grpc.aio.Channel] = []

    async def _start(
        tasks: Sequence[BackgroundTask] = (),
        readiness: Sequence[ReadinessCheck] = (),
        authenticator: Any = None,
    ) -> Started:
        service = Service(
            "probe",
            SERVICE,
            _register,
            tasks=lambda _: tasks,
            readiness=lambda _: readiness,
            authenticator=authenticator or AnonymousAuthenticator(),
        )
        server = Server(service, SETTINGS)
        port = server.bind("127.0.0.1", 0)
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        servers.append(server)
        channels.append(channel)
        return server, channel

    yield _start
    for channel in channels:
        await channel.close()
    for server in servers:
        server.request_shutdown()
        await server.wait()


def unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[S, S]:
    return channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=S.SerializeToString,
        response_deserializer=S.FromString,
    )


async def streamed(channel: grpc.aio.Channel, method: str) -> list[str]:
    stream = channel.unary_stream(
        f"/{SERVICE}/{method}",
        request_serializer=S.SerializeToString,
        response_deserializer=S.FromString,
    )
    return [r.value async for r in stream(S())]


async def test_domain_error_becomes_its_status_with_error_info_and_field_violations(
    start: Any,
) -> None:
    _, channel = await start()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "Invalid")(S(value="x"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_NATIONAL_ID",
        "probe.vkp",
        {"field": "patient.id"},
    )
    bad = bad_request(caught.value)
    assert bad is not None
    assert [(v.field, v.reason) for v in bad.field_violations] == [("patient.id", "INVALID")]


async def test_unexpected_exception_is_internal_and_its_message_stays_inside(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = await start()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "Crash")(S(value=PATIENT.national_id))
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert PATIENT.national_id not in (caught.value.details() or "")
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "INTERNAL"
    assert any("RuntimeError" in str(r.msg) for r in caplog.records)


async def test_request_id_of_the_caller_is_kept_and_sent_back(start: Any) -> None:
    _, channel = await start()
    call = unary(channel, "Echo")(S(value="hi"), metadata=((REQUEST_ID_KEY, "req-42"),))
    assert (await call).value == "hi"
    assert dict(await call.trailing_metadata())[REQUEST_ID_KEY] == "req-42"


async def test_a_failed_call_sends_its_request_id_back_too(start: Any) -> None:
    _, channel = await start()
    call = unary(channel, "Invalid")(S(), metadata=((REQUEST_ID_KEY, "req-9"),))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    trailing = dict(caught.value.trailing_metadata() or ())
    assert trailing[REQUEST_ID_KEY] == "req-9"
    assert error_info(caught.value) is not None  # the status details are still there


async def test_malformed_request_id_is_replaced_by_a_new_one(start: Any) -> None:
    _, channel = await start()
    call = unary(channel, "Echo")(
        S(value="hi"), metadata=((REQUEST_ID_KEY, "not a valid id; " + "x" * 200),)
    )
    await call
    sent_back = dict(await call.trailing_metadata())[REQUEST_ID_KEY]
    assert isinstance(sent_back, str)
    assert len(sent_back) == 32
    assert sent_back.isalnum()


async def test_streaming_responses_pass_through_the_interceptors(start: Any) -> None:
    _, channel = await start()
    assert await streamed(channel, "Count") == ["0", "1", "2"]


async def test_streaming_handler_that_writes_to_the_context_passes_through(start: Any) -> None:
    _, channel = await start()
    assert await streamed(channel, "CountByWriting") == ["w0", "w1"]


async def test_log_line_of_a_failed_call_names_its_request_id_and_code(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = await start()
    with pytest.raises(grpc.aio.AioRpcError):
        await unary(channel, "Invalid")(S(), metadata=((REQUEST_ID_KEY, "req-7"),))
    # The server logs the call as it ends, which may be just after the client has its answer.
    lines: list[Any] = []
    for _ in range(100):
        lines = [
            r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == "rpc"
        ]
        if lines:
            break
        await asyncio.sleep(0.02)
    assert [(line["request_id"], line["code"]) for line in lines] == [("req-7", "INVALID_ARGUMENT")]


async def test_auth_hook_refuses_a_call_without_valid_credentials(start: Any) -> None:
    _, channel = await start(authenticator=StaticTokenAuthenticator())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "WhoAmI")(S(), metadata=(("authorization", "Bearer forged"),))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "INVALID_TOKEN"


async def test_auth_hook_gives_the_servicer_the_principal(start: Any) -> None:
    _, channel = await start(authenticator=StaticTokenAuthenticator())
    answer = await unary(channel, "WhoAmI")(S(), metadata=(("authorization", "Bearer good"),))
    assert answer.value == "vendor-system-1"


async def test_health_answers_without_credentials(start: Any) -> None:
    _, channel = await start(authenticator=StaticTokenAuthenticator())
    health = health_pb2_grpc.HealthStub(channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def _status(channel: grpc.aio.Channel, name: str) -> int:
    health = health_pb2_grpc.HealthStub(channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=name))
    status: int = response.status
    return status


async def test_failing_readiness_check_turns_readiness_but_not_liveness_off(start: Any) -> None:
    reachable = True

    async def database() -> bool:
        return reachable

    _, channel = await start(readiness=[database])
    assert await _status(channel, "") == health_pb2.HealthCheckResponse.SERVING
    reachable = False
    for _ in range(100):
        if await _status(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.02)
    assert await _status(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await _status(channel, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await _status(channel, LIVENESS) == health_pb2.HealthCheckResponse.SERVING


async def test_background_task_sees_stopping_and_finishes_on_shutdown(start: Any) -> None:
    finished = asyncio.Event()

    async def relay(stopping: asyncio.Event) -> None:
        await stopping.wait()
        finished.set()

    server, _ = await start(tasks=[relay])
    server.request_shutdown()
    await asyncio.wait_for(server.wait(), 5)
    assert finished.is_set()


async def test_background_task_that_ignores_stopping_is_cancelled_after_the_grace(
    start: Any,
) -> None:
    cancelled = asyncio.Event()

    async def stubborn(stopping: asyncio.Event) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()  # where a real task hands back its leases
            raise

    server, _ = await start(tasks=[stubborn])
    loop = asyncio.get_running_loop()
    began = loop.time()
    server.request_shutdown()
    await asyncio.wait_for(server.wait(), 5)
    assert cancelled.is_set()
    assert loop.time() - began < SETTINGS.shutdown_grace_seconds + 1


async def test_dead_background_task_turns_liveness_off(start: Any) -> None:
    async def broken(stopping: asyncio.Event) -> None:
        raise RuntimeError("boom")

    _, channel = await start(tasks=[broken])
    for _ in range(100):
        if await _status(channel, LIVENESS) == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.02)
    assert await _status(channel, LIVENESS) == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_every_message_of_a_request_stream_is_checked_against_its_field_rules(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, channel = await start()
    count_ids = channel.stream_unary(
        f"/{SERVICE}/CountIds",
        request_serializer=NationalId.SerializeToString,
        response_deserializer=S.FromString,
    )
    good = [NationalId(value=p.national_id) for p in TEST_PEOPLE[:3]]
    assert (await count_ids(iter(good))).value == "3"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await count_ids(iter([*good, NationalId(value="123")]))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info, bad = error_info(caught.value), bad_request(caught.value)
    assert info is not None
    assert bad is not None
    assert info.reason == "INVALID_NATIONAL_ID"
    assert [v.field for v in bad.field_violations] == ["value"]


async def test_a_bidirectional_stream_answers_until_a_message_breaks_the_rules(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, channel = await start()
    echo_ids = channel.stream_stream(
        f"/{SERVICE}/EchoIds",
        request_serializer=NationalId.SerializeToString,
        response_deserializer=NationalId.FromString,
    )
    call = echo_ids(iter([NationalId(value=PATIENT.national_id), NationalId(value="x")]))
    received: list[str] = []

    async def read_all() -> None:
        async for response in call:
            received.append(response.value)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all()
    assert received == [PATIENT.national_id]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_server_stream_is_refused_before_its_first_answer_when_the_request_is_invalid(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, channel = await start()
    repeat_id = channel.unary_stream(
        f"/{SERVICE}/RepeatId",
        request_serializer=NationalId.SerializeToString,
        response_deserializer=NationalId.FromString,
    )
    good = [r.value async for r in repeat_id(NationalId(value=PATIENT.national_id))]
    assert good == [PATIENT.national_id] * 2
    received: list[NationalId] = []

    async def read_all() -> None:
        async for response in repeat_id(NationalId(value="0285009721")):
            received.append(response)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all()
    assert received == []
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_service_given_no_authenticator_refuses_every_call() -> None:
    server = Server(Service("probe", SERVICE, _register), SETTINGS)
    port = server.bind("127.0.0.1", 0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await unary(channel, "Echo")(S(value="hello"))
        info = error_info(caught.value)
        assert info is not None
        assert (caught.value.code(), info.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "NO_AUTHENTICATOR",
        )
    finally:
        server.request_shutdown()
        await server.wait()


#: The span id of a caller's span, in the W3C trace context it sends.
CALLER_SPAN = "00f067aa0ba902b7"


async def server_spans(
    exporter: InMemorySpanExporter, method: str, trace_id: str = ""
) -> list[ReadableSpan]:
    """The server spans of `method` this process exported (in the trace `trace_id`, if given);
    a call's span ends as it answers."""
    found: list[ReadableSpan] = []
    for _ in range(100):
        found = [
            s
            for s in exporter.get_finished_spans()
            if s.name == f"/{SERVICE}/{method}"
            and s.kind is trace.SpanKind.SERVER
            and (not trace_id or format(s.context.trace_id, "032x") == trace_id)
        ]
        if found:
            break
        await asyncio.sleep(0.02)
    return found


async def test_the_callers_trace_continues_in_a_server_span_current_in_the_servicer(
    start: Any, span_exporter: InMemorySpanExporter
) -> None:
    _, channel = await start()
    caller_trace = secrets.token_hex(16)
    traceparent = f"00-{caller_trace}-{CALLER_SPAN}-01"
    answer = await unary(channel, "TraceOf")(S(), metadata=(("traceparent", traceparent),))
    trace_id, span_id = answer.value.split("-")
    assert trace_id == caller_trace
    (span,) = await server_spans(span_exporter, "TraceOf", caller_trace)
    assert format(span.context.span_id, "016x") == span_id
    assert span.parent is not None
    assert (format(span.parent.trace_id, "032x"), format(span.parent.span_id, "016x")) == (
        caller_trace,
        CALLER_SPAN,
    )
    assert dict(span.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "TraceOf",
        "rpc.grpc.status_code": 0,
    }


async def test_a_call_without_trace_context_starts_a_trace_of_its_own(
    start: Any, span_exporter: InMemorySpanExporter
) -> None:
    _, channel = await start()
    first = (await unary(channel, "TraceOf")(S())).value.split("-")[0]
    second = (await unary(channel, "TraceOf")(S())).value.split("-")[0]
    assert first != second
    spans = [(await server_spans(span_exporter, "TraceOf", t))[0] for t in (first, second)]
    assert [s.parent for s in spans] == [None, None]


async def test_a_failed_calls_span_carries_its_code_and_only_a_fault_of_the_service_fails_it(
    start: Any, span_exporter: InMemorySpanExporter
) -> None:
    _, channel = await start()
    trace_id = secrets.token_hex(16)
    traceparent = (("traceparent", f"00-{trace_id}-{CALLER_SPAN}-01"),)
    for method in ("Invalid", "Crash"):
        with pytest.raises(grpc.aio.AioRpcError):
            await unary(channel, method)(S(), metadata=traceparent)
    (invalid,) = await server_spans(span_exporter, "Invalid", trace_id)
    (crash,) = await server_spans(span_exporter, "Crash", trace_id)
    assert (invalid.attributes or {})["rpc.grpc.status_code"] == 3
    assert invalid.status.status_code is trace.StatusCode.UNSET
    assert (crash.attributes or {})["rpc.grpc.status_code"] == 13
    assert crash.status.status_code is trace.StatusCode.ERROR
    assert [e.attributes.get("exception.type") for e in crash.events if e.attributes] == [
        "RuntimeError"
    ]


async def test_lines_the_servicer_logs_name_the_calls_request_id_and_method(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = await start()
    await unary(channel, "Log")(S(), metadata=((REQUEST_ID_KEY, "req-log-1"),))
    lines = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "working on it"
    ]
    assert [(line["request_id"], line["rpc"]) for line in lines] == [
        ("req-log-1", f"/{SERVICE}/Log")
    ]


def test_only_request_types_with_field_rules_are_checked_against_them() -> None:
    assert has_rules(NationalId.DESCRIPTOR)
    assert has_rules(SubmitEventRequest.DESCRIPTOR)  # its rules are in the messages it holds
    assert not has_rules(empty_pb2.Empty.DESCRIPTOR)
    assert not has_rules(S.DESCRIPTOR)


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == event]


async def test_a_call_that_brought_no_request_id_gets_back_the_one_its_log_lines_name(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = await start()
    call = unary(channel, "Log")(S())
    await call
    sent_back = dict(await call.trailing_metadata())[REQUEST_ID_KEY]
    assert [line["request_id"] for line in _lines(caplog, "working on it")] == [sent_back]


async def test_a_failed_call_that_brought_no_request_id_gets_one_back_named_by_its_log_line(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = await start()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "Invalid")(S())
    sent_back = dict(caught.value.trailing_metadata() or ())[REQUEST_ID_KEY]
    assert isinstance(sent_back, str)
    assert len(sent_back) == 32
    lines: list[dict[str, Any]] = []
    for _ in range(100):  # the line is logged as the call ends, maybe after the answer
        lines = [line for line in _lines(caplog, "rpc") if line["request_id"] == sent_back]
        if lines:
            break
        await asyncio.sleep(0.02)
    assert [line["code"] for line in lines] == ["INVALID_ARGUMENT"]
