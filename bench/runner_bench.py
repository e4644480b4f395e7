"""The runner's cost: a no-op unary RPC served by the hub's runner (request id and JSON logging,
error mapping, authentication, the field rules, telemetry as the OTEL_* settings say), without
and with a vendor token to verify, and with a token and every span exported (as with a
collector), against the same no-op RPC on a bare grpc.aio server (the baseline of every row).
Each server runs in a process of its own (`python bench/runner_bench.py --serve
bare|runner|runner-auth|runner-auth-traced`); the load comes from the bench's process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import empty_pb2
from load import Load, closed_loop, raw_call
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from vkp_lib.auth import AnonymousAuthenticator
from vkp_lib.identity.permissions import Permissions, Scope, Scopes
from vkp_lib.identity.setup import build_authentication
from vkp_lib.logging import configure_logging
from vkp_lib.rpc import Context
from vkp_lib.runner import Service, serve
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_lib.telemetry import setup_telemetry

SERVICE = "vkp.bench.v1.BenchService"
METHOD = f"/{SERVICE}/Noop"
BENCH_ACCESS = Permissions(SERVICE, {"Noop": Scope(Scopes.INGEST)})
KINDS = ("bare", "runner", "runner-auth", "runner-auth-traced")
E = empty_pb2.Empty


async def noop(request: E, context: Context) -> E:
    return E()


def _register(server: grpc.aio.Server, _: None) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        noop, request_deserializer=E.FromString, response_serializer=E.SerializeToString
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Noop": handler}),)
    )


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _serve_bare() -> None:
    server = grpc.aio.server()
    _register(server, None)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # SIGTERM ends it by returning, so a profiler wrapping the process writes its report.
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print(port, flush=True)
    await stopping.wait()
    await server.stop(0)


async def _serve_runner(with_auth: bool, traced: bool) -> None:
    # As deployed: logs at INFO, telemetry from the OTEL_* settings (none set: spans not
    # recorded); `traced`, as with a collector: every span made, redacted and exported (to
    # nowhere) by the batch processor.
    configure_logging("bench", "INFO")
    telemetry = setup_telemetry(
        "vkp-bench", span_exporter=_Discard() if traced else None, set_global=False
    )
    provider = telemetry.tracer_provider
    service = Service("bench", SERVICE, _register, authenticator=AnonymousAuthenticator())
    runtime = RuntimeSettings(development=True)
    if with_auth:  # the development issuer named by the environment (VKP_AUTH_*)
        authentication = build_authentication(BENCH_ACCESS, AuthSettings(), runtime)
        service.authenticator = authentication.authenticator
        service.on_start = authentication.on_start
    await serve(service, runtime, "127.0.0.1", 0, tracer_provider=provider)


class NoopServer:
    """One no-op server process; its port is read from its first line of output. `wrapper`
    starts it under a Python profiler (`["-m", "pyinstrument", ...]`), `prefix` under another
    program (`["valgrind", "--tool=callgrind", ...]`)."""

    def __init__(
        self,
        kind: str,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [*prefix, sys.executable, *wrapper, __file__, "--serve", kind],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={
                **os.environ,
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
                "VKP_SHUTDOWN_DRAIN_SECONDS": "0",
                **(env or {}),
            },
        )
        self.port = 0

    @property
    def address(self) -> str:
        if not self.port:
            assert self.process.stdout is not None
            self.port = int(self.process.stdout.readline())
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass(frozen=True)
class NoopLoad:
    seconds: float
    concurrency: int
    metadata: tuple[tuple[str, str], ...] = ()


async def _noop_load(address: str, load: NoopLoad, requests: int) -> Load:
    async with grpc.aio.insecure_channel(address) as channel:
        call = raw_call(channel, METHOD)
        return await closed_loop(
            call,
            [b""] * requests,  # an encoded Empty
            load.seconds,
            load.concurrency,
            metadata=load.metadata,
            warm_up=200 if load.seconds >= 0.5 else 20,  # the smoke run's are short
        )


def measure_noop(address: str, load: NoopLoad) -> Load:
    """No-op calls at `load.concurrency` in flight for `load.seconds`."""
    return asyncio.run(_noop_load(address, load, 200 + int(load.seconds * 100_000)))


def main() -> None:
    parser = argparse.ArgumentParser(description="a no-op server of the runner benchmark")
    parser.add_argument("--serve", choices=KINDS, required=True)
    args = parser.parse_args()
    if args.serve == "bare":
        asyncio.run(_serve_bare())
    else:
        asyncio.run(
            _serve_runner(
                with_auth=args.serve.startswith("runner-auth"),
                traced=args.serve == "runner-auth-traced",
            )
        )


if __name__ == "__main__":
    main()
