"""The registry's access decisions for the other services: cached, and never used past a change.

`AccessClient.check` asks the registry's `CheckAccess` once per (client, municipality, service,
action) and remembers the answer. A background task (`run`, owned by the service's runner)
follows `WatchChanges` from the revision it has applied and forgets every remembered decision
when a change arrives. While the feed is down the remembered decisions serve on for at most
`stale_after_seconds`; after that they are dropped and every check asks the registry until the
feed is back. `applied_revision` tells callers and tests how far the client has followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import grpc

from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_lib.errors import Unavailable
from vkp_lib.logging import get_logger

log = get_logger("vkp.registry.client")

Key = tuple[str, str, int, int]


class AccessClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        stale_after_seconds: float = 30.0,
        heartbeat_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)
        self._stale_after = stale_after_seconds
        self._silence = 3 * heartbeat_seconds  # no heartbeat for this long: the feed is down
        self._clock = clock
        self._decisions: dict[Key, pb.AccessDecision] = {}
        self.applied_revision = 0
        self._connected = False
        self._down_since: float | None = clock()
        self._advanced = asyncio.Condition()

    @property
    def caching(self) -> bool:
        """Whether remembered decisions may be used: the feed is up, or briefly down."""
        if self._connected:
            return True
        return self._down_since is not None and (
            self._clock() - self._down_since < self._stale_after and self.applied_revision > 0
        )

    async def check(
        self,
        client_id: str,
        municipality: str,
        service_code: common_pb2.ServiceCode.ValueType,
        action: pb.AccessAction.ValueType,
    ) -> pb.AccessDecision:
        """The registry's decision for this access (ask the registry if not remembered)."""
        key = (client_id, municipality, service_code, action)
        if self.caching and key in self._decisions:
            return self._decisions[key]
        if not self.caching:
            self._decisions.clear()
        request = pb.CheckAccessRequest(
            client_id=client_id,
            municipality=municipality,
            service_code=service_code,
            action=action,
        )
        for _ in range(40):
            try:
                decision = (await self._stub.CheckAccess(request)).decision
            except grpc.aio.AioRpcError as exc:
                log.warning("registry not reached", code=exc.code().name, details=exc.details())
                raise Unavailable(
                    "REGISTRY_UNAVAILABLE", "the registry cannot be asked now; try again"
                ) from None
            # A decision made before a change this client has seen (a replica behind the one
            # the feed comes from) is never used: ask again until the registry catches up.
            if decision.revision >= self.applied_revision:
                if self.caching:
                    self._decisions[key] = decision
                return decision
            await asyncio.sleep(0.05)
        raise Unavailable(
            "REGISTRY_BEHIND", "the registry has not caught up with its own change feed"
        )

    async def wait_for_revision(self, revision: int, seconds: float) -> bool:
        """True once the client has applied `revision`; False after `seconds`."""
        async with self._advanced:
            try:
                await asyncio.wait_for(
                    self._advanced.wait_for(lambda: self.applied_revision >= revision), seconds
                )
            except TimeoutError:
                return False
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        """Background task: follow the change feed until `stopping`, reconnecting with backoff."""
        backoff = 0.2
        while not stopping.is_set():
            follow = asyncio.create_task(self._follow())
            stop = asyncio.create_task(stopping.wait())
            done, _ = await asyncio.wait({follow, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if follow not in done:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow
                break
            self._went_down()
            if follow.result():  # it had been connected: start the backoff over
                backoff = 0.2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    def _went_down(self) -> None:
        if self._connected:
            log.warning("registry change feed down", applied_revision=self.applied_revision)
        self._connected = False
        if self._down_since is None:
            self._down_since = self._clock()

    async def _follow(self) -> bool:
        """Reads the feed until it ends, fails or falls silent; True if anything came."""
        request = pb.WatchChangesRequest(after_revision=self.applied_revision)
        stream = self._stub.WatchChanges(request)
        heard = False
        try:
            while True:
                try:
                    response = await asyncio.wait_for(stream.read(), self._silence)
                except TimeoutError:
                    return heard  # silent too long: reconnect
                if response is grpc.aio.EOF:
                    return heard
                assert isinstance(response, pb.WatchChangesResponse)
                heard = True
                if response.changes:
                    self._decisions.clear()
                if not self._connected:
                    self._connected, self._down_since = True, None
                    log.info("registry change feed up", applied_revision=self.applied_revision)
                async with self._advanced:
                    self.applied_revision = max(self.applied_revision, response.head_revision)
                    self._advanced.notify_all()
        except grpc.aio.AioRpcError as exc:
            log.info("registry change feed interrupted", code=exc.code().name)
            return heard
        finally:
            stream.cancel()
