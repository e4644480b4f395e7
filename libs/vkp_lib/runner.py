"""The server runner every service uses.

`Service` says what a service is: its name, how to register its servicer, the background tasks
it owns (relays, workers, timers), its readiness checks and what to close at the end. `Server`
runs it on grpc.aio with health, reflection, the call interceptor and a 1 MiB request limit, and
shuts it down gracefully:

1. SIGTERM (or SIGINT): readiness NOT_SERVING (liveness stays SERVING), open health watches end;
2. a short drain, so probes and load balancers see it before anything is refused;
3. stop accepting; in-flight calls and background tasks get the grace period (tasks see their
   `stopping` event and finish or hand back their leases; after the grace they are cancelled);
4. close pools and flush telemetry; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from vkp_lib.auth import Authenticator, DenyAllAuthenticator
from vkp_lib.health import LIVENESS, NOT_SERVING, HealthService
from vkp_lib.interceptors import CallInterceptor
from vkp_lib.logging import get_logger
from vkp_lib.settings import MAX_REQUEST_BYTES, RuntimeSettings

log = get_logger("vkp.runner")

#: A background task: runs until `stopping` is set, then finishes its work or hands it back.
BackgroundTask = Callable[[asyncio.Event], Awaitable[None]]
#: A readiness check: True when a dependency the service needs is reachable.
ReadinessCheck = Callable[[], Awaitable[bool]]
D = TypeVar("D")


@asynccontextmanager
async def no_dependencies() -> AsyncIterator[None]:
    yield None


@dataclass
class Service(Generic[D]):
    """What the runner needs to know about one service.

    `lifespan` builds the service's dependencies (a frozen dataclass: its store, clients,
    relays) when the server starts and closes them after it has stopped; `register`, `tasks` and
    `readiness` get them. A failure in `lifespan` stops the start.
    """

    name: str  # short name: "ingest"
    full_name: str  # the gRPC service: "vkp.ingest.v1.IngestService"
    register: Callable[[grpc.aio.Server, D], None]
    lifespan: Callable[[], AbstractAsyncContextManager[D]] = no_dependencies  # type: ignore[assignment]  # D is None for a service without dependencies
    tasks: Callable[[D], Sequence[BackgroundTask]] = lambda _: ()
    readiness: Callable[[D], Sequence[ReadinessCheck]] = lambda _: ()
    #: Run before the lifespan (read key sets); a failure stops the start.
    on_start: Sequence[Callable[[], Awaitable[None]]] = ()
    #: Run after the lifespan has closed.
    on_close: Sequence[Callable[[], Awaitable[None]]] = ()
    #: Who may call: without one, every call is refused.
    authenticator: Authenticator = field(default_factory=DenyAllAuthenticator)


class Server(Generic[D]):
    """One service on a grpc.aio server, with its health, tasks and graceful shutdown."""

    def __init__(
        self,
        service: Service[D],
        settings: RuntimeSettings,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.health = HealthService([service.full_name])
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._readiness: Sequence[ReadinessCheck] = ()
        self._shutdown: asyncio.Task[None] | None = None
        age_ms = int(settings.max_connection_age_seconds * 1000)
        self.grpc = grpc.aio.server(
            interceptors=[
                # One interceptor, one coroutine per call: request id and log line, the server
                # span, authentication, the field rules and error mapping (vkp_lib.interceptors).
                CallInterceptor(
                    f"{service.name}.vkp", service.authenticator, tracer_provider=tracer_provider
                ),
            ],
            options=[
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                ("grpc.so_reuseport", 0),
                ("grpc.max_connection_age_ms", age_ms),
                ("grpc.max_connection_age_grace_ms", int(settings.shutdown_grace_seconds * 1000)),
            ],
        )
        self._lifespan = contextlib.AsyncExitStack()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            [
                service.full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.grpc,
        )

    def bind(self, host: str, port: int) -> int:
        """Listen on host:port (port 0: a free one) and return the bound port."""
        bound = self.grpc.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"could not bind {host}:{port}")
        return bound

    async def start(self) -> None:
        for prepare in self.service.on_start:
            await prepare()
        dependencies = await self._lifespan.enter_async_context(self.service.lifespan())
        self.service.register(self.grpc, dependencies)
        self._readiness = self.service.readiness(dependencies)
        await self.grpc.start()
        for task in self.service.tasks(dependencies):
            self._tasks.append(asyncio.create_task(self._supervise(task)))
        if self._readiness:
            self._tasks.append(asyncio.create_task(self._watch_readiness()))
        log.info("serving", grpc_service=self.service.full_name)

    async def _supervise(self, task: BackgroundTask) -> None:
        name = getattr(task, "__qualname__", repr(task))
        try:
            await task(self._stopping)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A task the process owns has died: the process is broken, so liveness fails too.
            log.error("background task died", task=name, error_type=type(exc).__qualname__)
            await self.health.set_ready(False)
            await self.health.set(LIVENESS, NOT_SERVING)

    async def _watch_readiness(self) -> None:
        while not self._stopping.is_set():
            results = await asyncio.gather(
                *(check() for check in self._readiness), return_exceptions=True
            )
            ready = all(r is True for r in results)
            await self.health.set_ready(ready)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), self.settings.readiness_interval_seconds
                )

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent); `wait` returns when it is done."""
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self._graceful_shutdown())

    async def _graceful_shutdown(self) -> None:
        log.info("shutting down", drain_seconds=self.settings.shutdown_drain_seconds)
        await self.health.begin_shutdown()
        await asyncio.sleep(self.settings.shutdown_drain_seconds)
        grace = self.settings.shutdown_grace_seconds
        self._stopping.set()
        stop = asyncio.create_task(self.grpc.stop(grace))
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await stop
        try:
            await self._lifespan.aclose()
        except Exception as exc:
            log.error("close failed", error_type=type(exc).__qualname__)
        for close in self.service.on_close:
            try:
                await close()
            except Exception as exc:
                log.error("close failed", error_type=type(exc).__qualname__)
        log.info("stopped")
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()


async def serve(
    service: Service[Any],
    settings: RuntimeSettings,
    host: str,
    port: int,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    announce: Callable[[int], None] | None = None,
) -> None:
    """Run a service until SIGTERM or SIGINT, then shut it down gracefully."""
    server = Server(service, settings, tracer_provider=tracer_provider)
    bound = server.bind(host, port)
    await server.start()
    (announce or _print_port)(bound)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_shutdown)
    await server.wait()
    # Shut down already: a repeated signal must not kill the process before it exits 0 (closing
    # the loop would otherwise restore the default handlers while telemetry still flushes).
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


def _print_port(port: int) -> None:
    """The bound port, alone on one line of stdout, so a parent process can read it."""
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
