"""grpc.health.v1 for the runner: readiness, liveness and one status per service.

Names served:
- `""` (overall): readiness. It reflects the service's dependencies through readiness checks and
  turns NOT_SERVING first thing on shutdown.
- `liveness`: whether the process itself works. It never reflects dependencies, so a database
  outage does not make Kubernetes restart every pod; it fails only when a background task the
  process owns has died.
- the full name of the service (`vkp.ingest.v1.IngestService`): follows the overall status.

Unlike grpcio-health-checking's servicer, `Watch` streams end once they have sent NOT_SERVING at
shutdown, so an open watch does not hold the server for the whole grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vkp_lib.rpc import Context

LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):
    def __init__(self, service_names: list[str]) -> None:
        self._status: dict[str, health_pb2.HealthCheckResponse.ServingStatus.ValueType] = {
            name: SERVING for name in ["", LIVENESS, *service_names]
        }
        self._changed = asyncio.Condition()
        self._closing = False

    def status(self, name: str) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
        return self._status.get(name, SERVICE_UNKNOWN)

    async def set(
        self, name: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        if self._closing:
            return
        async with self._changed:
            self._status[name] = status
            self._changed.notify_all()

    async def set_ready(self, ready: bool) -> None:
        """Readiness: the overall name and every service name, never liveness."""
        for name in self._status:
            if name != LIVENESS:
                await self.set(name, SERVING if ready else NOT_SERVING)

    async def begin_shutdown(self) -> None:
        """Readiness NOT_SERVING for good; open watches send it and end."""
        await self.set_ready(False)
        async with self._changed:
            self._closing = True
            self._changed.notify_all()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self._status:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service name")
        return health_pb2.HealthCheckResponse(status=self._status[request.service])

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            async with self._changed:
                current = self.status(request.service)
                closing = self._closing
                if current == last and not closing:
                    await self._changed.wait()
                    continue
            if current != last:
                yield health_pb2.HealthCheckResponse(status=current)
                last = current
            if closing:
                return
