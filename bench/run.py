"""Benchmarks of the hub, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/run.py [--seconds 3] [--concurrency 16]

runner: a no-op unary RPC served by the hub's runner (OpenTelemetry with a batch exporter,
request id and JSON logging, error mapping, authentication, the field rules), without and with
a vendor token to verify, against the same no-op RPC on a bare grpc.aio server. Each server
runs in its own process; the load comes from this one over loopback, `concurrency` calls in
flight.

validation: the contracts' field rules (protovalidate) on an event of each payload kind and on a
batch of 500, against decoding the same message (validation_bench.py).

audit: records committed per second when 16 callers each await theirs (as lookup will), into a
real audit process on SQLite, against the no-op RPC (audit_bench.py).

ingest: SubmitEvent at the same concurrency, durable with a vendor token, and SubmitEvents of
500 back to back, into a real ingest process on SQLite (ingest_bench.py).

identity: verifying a vendor token (the first time, and again from the cache), a service token,
and a DPoP proof (identity_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from audit_bench import measure_audit
from google.protobuf import empty_pb2
from identity_bench import identity_table
from ingest_bench import measure_ingest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from rich.console import Console
from rich.table import Table
from validation_bench import validation_table

from vkp_lib.auth import AnonymousAuthenticator
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Permissions, Scope, Scopes
from vkp_lib.identity.setup import build_authentication
from vkp_lib.logging import configure_logging
from vkp_lib.rpc import Context
from vkp_lib.runner import Service, serve
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_lib.telemetry import RedactingSpanExporter, Redactor

METHOD = "/vkp.bench.v1.BenchService/Noop"
BENCH_ACCESS = Permissions("vkp.bench.v1.BenchService", {"Noop": Scope(Scopes.INGEST)})
E = empty_pb2.Empty


async def noop(request: E, context: Context) -> E:
    return E()


def _register(server: grpc.aio.Server, _: None) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        noop, request_deserializer=E.FromString, response_serializer=E.SerializeToString
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("vkp.bench.v1.BenchService", {"Noop": handler}),)
    )


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _serve_bare() -> None:
    server = grpc.aio.server()
    _register(server, None)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def _serve_runner(with_auth: bool) -> None:
    configure_logging("bench", "INFO")  # as deployed
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(_Discard(), Redactor())))
    service = Service(
        "bench", "vkp.bench.v1.BenchService", _register, authenticator=AnonymousAuthenticator()
    )
    runtime = RuntimeSettings(development=True)
    if with_auth:  # the development issuer named by the environment (VKP_AUTH_*)
        authentication = build_authentication(BENCH_ACCESS, AuthSettings(), runtime)
        service.authenticator = authentication.authenticator
        service.on_start = authentication.on_start
    await serve(service, runtime, "127.0.0.1", 0, tracer_provider=provider)


async def _load(
    port: int, seconds: float, concurrency: int, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[float, float, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            METHOD, request_serializer=E.SerializeToString, response_deserializer=E.FromString
        )
        for _ in range(200):  # warm up
            await call(E(), metadata=metadata)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                await call(E(), metadata=metadata)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000


def _measure(
    kind: str,
    seconds: float,
    concurrency: int,
    env: dict[str, str] | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[float, float, float]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "OTEL_SDK_DISABLED": "true",
            "VKP_SHUTDOWN_DRAIN_SECONDS": "0",
            **(env or {}),
        },
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return asyncio.run(_load(port, seconds, concurrency, metadata))
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description="VKP benchmarks")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--serve", choices=["bare", "runner", "runner-auth"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        if args.serve == "bare":
            asyncio.run(_serve_bare())
        else:
            asyncio.run(_serve_runner(with_auth=args.serve == "runner-auth"))
        return
    configure_logging("bench", "WARNING")
    base = _measure("bare", args.seconds, args.concurrency)
    runner = _measure("runner", args.seconds, args.concurrency)
    with tempfile.TemporaryDirectory() as folder:
        issuer = DevelopmentIssuer.open(Path(folder))
        token = issuer.vendor_token("bench-client", [Scopes.INGEST])
        with_auth = _measure(
            "runner-auth",
            args.seconds,
            args.concurrency,
            env=issuer.env(),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        identity = identity_table(issuer, args.seconds, 1 / base[0])
    table = Table(title=f"no-op unary RPC, concurrency {args.concurrency}, {args.seconds:g} s each")
    for column in ("server", "req/s", "p50 ms", "p99 ms", "req/s vs baseline", "p99 vs baseline"):
        table.add_column(column, justify="right" if column != "server" else "left")
    audit = measure_audit(args.seconds, args.concurrency)
    ingest, batches = measure_ingest(args.seconds, args.concurrency)
    ingest_pg, batches_pg = measure_ingest(args.seconds, args.concurrency, "postgresql")
    rows = (
        ("bare grpc.aio (baseline)", base),
        ("vkp runner", runner),
        ("vkp runner, vendor token (bearer)", with_auth),
        ("audit Record, awaited, durable (SQLite)", audit),
        ("ingest SubmitEvent, durable, auth on (SQLite)", ingest),
        ("ingest SubmitEvent, durable, auth on (PostgreSQL)", ingest_pg),
    )
    for name, (rate, p50, p99) in rows:
        table.add_row(
            name,
            f"{rate:,.0f}",
            f"{p50:.2f}",
            f"{p99:.2f}",
            f"{rate / base[0]:.2f}",
            f"{p99 / base[2]:.2f}",
        )
    console = Console(width=120)
    console.print(table)
    console.print(validation_table(args.seconds, 1 / base[0]))
    console.print(identity)
    batch_table = Table(title="ingest SubmitEvents of 500, back to back, durable")
    for column in ("database", "events/s", "median ms per batch", "slowest ms", "vs no-op req/s"):
        batch_table.add_column(column, justify="left" if column == "database" else "right")
    for backend, (events, median, slowest) in (("SQLite", batches), ("PostgreSQL", batches_pg)):
        batch_table.add_row(
            backend, f"{events:,.0f}", f"{median:.0f}", f"{slowest:.0f}", f"{events / base[0]:.2f}"
        )
    console.print(batch_table)


if __name__ == "__main__":
    main()
