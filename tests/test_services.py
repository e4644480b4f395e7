"""Each of the five services as a real `vkp serve` process: health, reflection, the request size
limit, the contracts' field rules and UNIMPLEMENTED placeholders, graceful shutdown and trace
propagation."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import SERVICES
from tests.test_contracts import CONTRACTS
from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp_audit.permissions import PERMISSIONS as AUDIT_ACCESS
from vkp_ingest.permissions import PERMISSIONS as INGEST_ACCESS
from vkp_journaling.permissions import PERMISSIONS as JOURNALING_ACCESS
from vkp_lib.health import LIVENESS
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import AnyOf, Permissions, Requirement, Scope, Scopes
from vkp_lib.status import bad_request, error_info
from vkp_lib.testing.collector import CollectedSpan, Collector
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.processes import TEST_ENV, ServiceProcess
from vkp_lookup.permissions import PERMISSIONS as LOOKUP_ACCESS
from vkp_registry.permissions import PERMISSIONS as REGISTRY_ACCESS

FIRST_RPC = {
    "registry": "/vkp.registry.v1.RegistryService/GetMunicipality",
    "ingest": "/vkp.ingest.v1.IngestService/SubmitEvent",
    "journaling": "/vkp.journaling.v1.JournalingService/GetEntry",
    "lookup": "/vkp.lookup.v1.LookupService/GetPatient",
    "audit": "/vkp.audit.v1.AuditService/Query",
}


PERMISSIONS: dict[str, Permissions] = {
    "registry": REGISTRY_ACCESS,
    "ingest": INGEST_ACCESS,
    "journaling": JOURNALING_ACCESS,
    "lookup": LOOKUP_ACCESS,
    "audit": AUDIT_ACCESS,
}
VENDOR_ORG = "312229544"


def full_name(name: str) -> str:
    return f"vkp.{name}.v1.{name.capitalize()}Service"


Metadata = tuple[tuple[str, str], ...]


def raw_call(channel: grpc.Channel, method: str, payload: bytes, metadata: Metadata = ()) -> bytes:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
    result: bytes = call(payload, timeout=10, metadata=metadata)
    return result


def credentials(issuer: DevelopmentIssuer, requirement: Requirement | None) -> Metadata:
    """A token that meets `requirement`: a vendor's with the scope, or a hub service's."""
    option = requirement.options[0] if isinstance(requirement, AnyOf) else requirement
    if isinstance(option, Scope):
        token = issuer.vendor_token("test-client", [option.name], organization_number=VENDOR_ORG)
    else:
        token = issuer.service_token("ingest")
    return (("authorization", f"Bearer {token}"),)


def ingest_token(issuer: DevelopmentIssuer) -> Metadata:
    return credentials(issuer, Scope(Scopes.INGEST))


@pytest.mark.parametrize("name", SERVICES)
def test_readiness_liveness_and_service_health_are_serving(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    with hub[name].channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", LIVENESS, full_name(name)):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service


@pytest.mark.parametrize("name", SERVICES)
def test_reflection_lists_the_service_under_its_final_name(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    with hub[name].channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in response.list_services_response.service}
        assert full_name(name) in names
        assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize("name", SERVICES)
def test_two_megabyte_request_is_refused_with_resource_exhausted(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    with hub[name].channel() as channel, pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, FIRST_RPC[name], b"\x0a" + b"\xff" * (2 * 1024 * 1024))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def _call_with_empty_request(
    channel: grpc.Channel, method: MethodDescriptor, metadata: Metadata
) -> None:
    """Calls `method` with an empty request; a server stream counts as answered at its first
    message."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.server_streaming:
        stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
        responses = stream(b"", timeout=10, metadata=metadata)
        next(iter(responses))
        responses.cancel()
    else:
        raw_call(channel, path, b"", metadata)


@pytest.mark.parametrize("name", SERVICES)
def test_every_rpc_of_the_contract_is_served_through_the_interceptors(
    hub: dict[str, ServiceProcess], dev_issuer: DevelopmentIssuer, name: str
) -> None:
    """With the credentials its access rule asks for, an empty request is answered, breaks the
    method's field rules, finds nothing, or reaches a placeholder; each failure carries the
    service's ErrorInfo, which a method the server does not know would not."""
    service = CONTRACTS[name].DESCRIPTOR.services_by_name[f"{name.capitalize()}Service"]
    permissions = PERMISSIONS[name]
    answers: dict[str, tuple[str, str]] = {}
    with hub[name].channel() as channel:
        for method in service.methods:
            requirement = permissions.requirement(f"/{service.full_name}/{method.name}")
            try:
                _call_with_empty_request(channel, method, credentials(dev_issuer, requirement))
            except grpc.RpcError as exc:
                info = error_info(exc)
                assert info is not None, method.name
                assert info.domain == f"{name}.vkp", method.name
                answers[method.name] = (exc.code().name, info.reason)
            else:
                answers[method.name] = ("OK", "")
    assert set(answers.values()) <= {
        ("OK", ""),
        ("UNIMPLEMENTED", "NOT_IMPLEMENTED"),
        ("INVALID_ARGUMENT", "INVALID_FORMAT"),
        ("INVALID_ARGUMENT", "INVALID_ORGANIZATION_NUMBER"),
    }, answers


#: Bytes no message decodes: field 0 with wire type 7, then noise.
GARBAGE = b"\x07\xff\xfe" + random.Random(13).randbytes(61)


def _log_lines(process: ServiceProcess) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    for line in process.logs().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"level": "raw", "event": line})
    return lines


def _call_with_bytes(
    channel: grpc.Channel, path: str, method: MethodDescriptor, payload: bytes, metadata: Metadata
) -> None:
    if method.server_streaming:
        stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
        list(stream(payload, timeout=10, metadata=metadata))
    else:
        raw_call(channel, path, payload, metadata)


@pytest.mark.parametrize("name", SERVICES)
def test_bytes_that_do_not_decode_are_invalid_argument_malformed_request_for_every_rpc(
    hub: dict[str, ServiceProcess], dev_issuer: DevelopmentIssuer, name: str
) -> None:
    """Not UNKNOWN with a traceback: the caller's fault, with an ErrorInfo, the request id in the
    trailing metadata and one warning line in the service's log per call."""
    service = CONTRACTS[name].DESCRIPTOR.services_by_name[f"{name.capitalize()}Service"]
    permissions = PERMISSIONS[name]
    before = len(_log_lines(hub[name]))
    with hub[name].channel() as channel:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            request_id = f"garbage-{method.name}"
            metadata = (
                *credentials(dev_issuer, permissions.requirement(path)),
                ("x-request-id", request_id),
            )
            with pytest.raises(grpc.RpcError) as caught:
                _call_with_bytes(channel, path, method, GARBAGE, metadata)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, method.name
            info = error_info(caught.value)
            assert info is not None, method.name
            assert (info.reason, info.domain) == ("MALFORMED_REQUEST", f"{name}.vkp")
            assert method.input_type.full_name in (caught.value.details() or "")
            trailing: dict[str, object] = {
                m.key: m.value for m in caught.value.trailing_metadata() or ()
            }
            assert trailing.get("x-request-id") == request_id
    # The warning is written before the answer goes out.
    new = _log_lines(hub[name])[before:]
    warnings = [line for line in new if line.get("event") == "malformed request"]
    assert len(warnings) == len(service.methods)
    assert {line["level"] for line in warnings} == {"warning"}
    assert {line.get("request_id") for line in warnings} == {
        f"garbage-{m.name}" for m in service.methods
    }
    assert not [line for line in new if line.get("level") in ("error", "raw")]


def _garbage_to_health(channel: grpc.Channel) -> None:
    raw_call(channel, "/grpc.health.v1.Health/Check", GARBAGE)


def _garbage_to_reflection(channel: grpc.Channel) -> None:
    path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    stream: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
    list(stream(iter([GARBAGE]), timeout=10))


@pytest.mark.parametrize("call", [_garbage_to_health, _garbage_to_reflection])
def test_bytes_that_do_not_decode_are_malformed_for_health_and_reflection_too(
    hub: dict[str, ServiceProcess], call: Callable[[grpc.Channel], None]
) -> None:
    with hub["ingest"].channel() as channel, pytest.raises(grpc.RpcError) as caught:
        call(channel)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "MALFORMED_REQUEST"


@pytest.mark.parametrize("name", SERVICES)
def test_a_call_without_a_token_is_unauthenticated(
    hub: dict[str, ServiceProcess], name: str
) -> None:
    service = CONTRACTS[name].DESCRIPTOR.services_by_name[f"{name.capitalize()}Service"]
    with hub[name].channel() as channel:
        for method in service.methods:
            with pytest.raises(grpc.RpcError) as caught:
                _call_with_empty_request(channel, method, ())
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED, method.name
            info = error_info(caught.value)
            assert info is not None
            assert info.reason == "TOKEN_MISSING"


def test_a_well_formed_event_passes_the_rules_and_reaches_the_access_decision(
    hub: dict[str, ServiceProcess], dev_issuer: DevelopmentIssuer
) -> None:
    """The hub's registry here knows no vendor: the event gets as far as the registry's no."""
    with hub["ingest"].channel() as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).SubmitEvent(
            ingest_pb2.SubmitEventRequest(event=sample_event("supervision")),
            timeout=10,
            metadata=ingest_token(dev_issuer),
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert info is not None
    assert (info.reason, info.domain) == ("UNKNOWN_ORGANIZATION", "ingest.vkp")


def test_a_malformed_event_is_answered_invalid_argument_naming_the_field(
    hub: dict[str, ServiceProcess], dev_issuer: DevelopmentIssuer
) -> None:
    event = sample_event("alarm_step")
    event.patient.value = event.patient.value[:10]
    with hub["ingest"].channel() as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).SubmitEvent(
            ingest_pb2.SubmitEventRequest(event=event),
            timeout=10,
            metadata=ingest_token(dev_issuer),
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info, bad = error_info(caught.value), bad_request(caught.value)
    assert info is not None
    assert bad is not None
    assert (info.reason, info.domain) == ("INVALID_NATIONAL_ID", "ingest.vkp")
    assert [(v.field, v.reason) for v in bad.field_violations] == [
        ("event.patient.value", "INVALID_NATIONAL_ID")
    ]
    assert event.patient.value not in (caught.value.details() or "")


@pytest.mark.parametrize("name", SERVICES)
def test_sigterm_turns_health_not_serving_then_exits_zero_within_the_grace(
    name: str, auth_env: dict[str, str]
) -> None:
    process = ServiceProcess(name, auth_env)
    try:
        process.wait_serving()
        seen: list[int] = []
        watching = threading.Event()

        def watch() -> None:
            with process.channel() as channel:
                stream = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(service=""), timeout=15
                )
                for response in stream:
                    seen.append(response.status)
                    watching.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert watching.wait(10)
        began = time.monotonic()
        code = process.terminate()
        elapsed = time.monotonic() - began
        watcher.join(10)
    finally:
        process.kill()
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert seen == [serving, not_serving]
    assert code == 0
    drain, grace = (
        float(TEST_ENV[k]) for k in ("VKP_SHUTDOWN_DRAIN_SECONDS", "VKP_SHUTDOWN_GRACE_SECONDS")
    )
    assert elapsed < drain + grace


async def test_client_trace_continues_in_the_server(
    hub: dict[str, ServiceProcess], otel_collector: Collector, span_exporter: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("vendor-backend")
    with tracer.start_as_current_span("vendor submits an event") as parent:
        address = hub["ingest"].address
        async with grpc.aio.insecure_channel(
            address, interceptors=aio_client_interceptors()
        ) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await ingest_pb2_grpc.IngestServiceStub(channel).SubmitEvent(
                    ingest_pb2.SubmitEventRequest(), timeout=5
                )
    trace_id = format(parent.get_span_context().trace_id, "032x")
    client_span = next(
        s
        for s in span_exporter.get_finished_spans()
        if s.kind is trace.SpanKind.CLIENT
        and s.context.trace_id == parent.get_span_context().trace_id
    )

    def is_server_span(s: CollectedSpan) -> bool:
        return s.trace_id == trace_id and s.service == "vkp-ingest"

    (server_span,) = otel_collector.wait_for(is_server_span)
    assert server_span.span.name == "/vkp.ingest.v1.IngestService/SubmitEvent"
    assert server_span.parent_span_id == format(client_span.context.span_id, "016x")


def test_invalid_settings_stop_the_service_before_it_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vkp_cli", "serve", "audit", "--port", "0"],
        env={"VKP_SHUTDOWN_GRACE_SECONDS": "-1", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "VKP_SHUTDOWN_GRACE_SECONDS" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "variable", "value"),
    [
        ("ingest", "VKP_INGEST_MAX_AGE_SECONDS", "-5"),
        ("journaling", "VKP_JOURNALING_WORKERS", "many"),
        ("registry", "VKP_REGISTRY_POLL_SECONDS", "0"),
        ("audit", "VKP_DB_MIGRATE_ON_START", "perhaps"),
        ("lookup", "VKP_LOOKUP_ALARM_GRACE_SECONDS", "-1"),
    ],
)
def test_a_bad_service_setting_stops_the_service_naming_the_variable(
    auth_env: dict[str, str], name: str, variable: str, value: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vkp_cli", "serve", name, "--port", "0"],
        env={**auth_env, variable: value, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert len(problems) == 1
    assert problems[0].startswith(f"{variable}: ")
    assert result.stdout == ""


def _serve_audit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vkp_cli", "serve", "audit", "--port", "0"],
        env={**env, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_service_without_its_auth_settings_does_not_start() -> None:
    result = _serve_audit({})
    assert result.returncode == 2
    assert "VKP_AUTH_ISSUER" in result.stderr
    assert "VKP_AUTH_SERVICE_JWKS_FILE" in result.stderr
    assert result.stdout == ""


def test_a_service_refuses_the_development_issuer_outside_development_mode(
    auth_env: dict[str, str],
) -> None:
    result = _serve_audit({**auth_env, "VKP_DEVELOPMENT": "false"})
    assert result.returncode == 2
    assert "development token issuer" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("name", SERVICES)
def test_the_permissions_have_a_rule_for_every_rpc_of_the_contract(name: str) -> None:
    service = CONTRACTS[name].DESCRIPTOR.services_by_name[f"{name.capitalize()}Service"]
    permissions = PERMISSIONS[name]
    assert permissions.service == service.full_name
    assert set(permissions.rules) == {m.name for m in service.methods}


def _vkp(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vkp_cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def test_tokens_from_vkp_token_issue_are_accepted_by_the_hub(
    hub: dict[str, ServiceProcess], dev_issuer: DevelopmentIssuer, tmp_path: Path
) -> None:
    folder = str(dev_issuer.directory)
    plain = _vkp("token", "issue", "--dir", folder, "--client-id", "dispenser-cloud")
    key = str(tmp_path / "dpop.jwk")
    bound = _vkp("token", "issue", "--dir", folder, "--dpop-key", key)
    method = "/vkp.ingest.v1.IngestService/SubmitEvent"
    proof = _vkp("token", "proof", "--dpop-key", key, "--token", bound, "--method", method)
    service = _vkp("token", "issue", "--dir", folder, "--kind", "service", "--service", "lookup")
    request = ingest_pb2.SubmitEventRequest(event=sample_event("home_measurement"))
    check_alarm = ingest_pb2.CheckOpenAlarmRequest()
    with hub["ingest"].channel() as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        # Past authentication: the registry's decision (which knows no vendor here), or the field
        # rules of an empty request.
        calls: list[tuple[Callable[[], object], grpc.StatusCode]] = [
            (
                lambda: stub.SubmitEvent(
                    request, timeout=10, metadata=(("authorization", f"Bearer {plain}"),)
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (
                lambda: stub.SubmitEvent(
                    request,
                    timeout=10,
                    metadata=(("authorization", f"DPoP {bound}"), ("dpop", proof)),
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (
                lambda: stub.CheckOpenAlarm(
                    check_alarm, timeout=10, metadata=(("authorization", f"Bearer {service}"),)
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
        ]
        for call, expected in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() is expected, caught.value.details()
            info = error_info(caught.value)
            assert info is not None
            assert info.reason in ("UNKNOWN_ORGANIZATION", "INVALID_FORMAT"), info.reason


def test_a_service_whose_key_set_cannot_be_read_does_not_start(auth_env: dict[str, str]) -> None:
    result = _serve_audit({**auth_env, "VKP_AUTH_JWKS_FILE": "/nonexistent/jwks.json"})
    assert result.returncode == 1
    assert "audit could not start: the key set at /nonexistent/jwks.json" in result.stderr
    assert result.stdout == ""
