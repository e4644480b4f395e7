"""The registry's access decisions for the other services: cached, and never used past a change.

`DecisionClient.check` asks the registry's `CheckAccess` once per (client, municipality, service,
action) and remembers the answer. A background task (`run`, owned by the service's runner)
follows `WatchChanges` from the revision it has applied and forgets every remembered decision
when a change arrives (a DEBUG line says the revision applied). While the feed is down the
remembered decisions serve on for at most `stale_after_seconds`; after that they are dropped
and every check asks the registry until the feed is back. `applied_revision` tells callers and
tests how far the client has followed.

A feed that ends is not an outage: the registry's server recycles every connection after
VKP_MAX_CONNECTION_AGE_SECONDS and a replica that shuts down ends its streams, and the client
reconnects at once (a DEBUG line). Only a feed that stays down through its reconnect attempts
for `warn_after_seconds` is worth a warning, once per outage; its return is logged at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_lib.errors import Unavailable
from vkp_lib.logging import get_logger
from vkp_lib.tasks import Backoff, wait

log = get_logger("vkp.registry.client")
#: Between a stream's end and the next attempt: 0.1-0.2 s after one that was up, then doubling.
RECONNECT = Backoff(base=0.2, cap=5.0)

Key = tuple[str, str, int, int]


class Decisions(Protocol):
    """The registry's access decisions, as a service's use cases ask them (`DecisionClient`)."""

    async def check(
        self,
        client_id: str,
        municipality: str,
        service_code: common_pb2.ServiceCode.ValueType,
        action: pb.AccessAction.ValueType,
    ) -> pb.AccessDecision: ...


class DecisionClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        stale_after_seconds: float = 30.0,
        heartbeat_seconds: float = 5.0,
        warn_after_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)
        self._stale_after = stale_after_seconds
        self._silence = 3 * heartbeat_seconds  # no heartbeat for this long: the feed is down
        self._warn_after = warn_after_seconds
        self._clock = clock
        self._decisions: dict[Key, pb.AccessDecision] = {}
        self.applied_revision = 0
        self._connected = False
        self._ever_connected = False
        self._down_since: float | None = clock()
        self._warned = False  # this outage has been reported
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
        failures = 0
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
            heard, ended = follow.result()
            self._ended(heard, ended)
            failures = 1 if heard else failures + 1  # it had been connected: start over
            await wait(stopping, RECONNECT.delay(failures))

    def _ended(self, heard: bool, ended: str) -> None:
        """A stream of the feed has ended (`ended`: how). One that had been up ended as planned
        and is reconnected at once; one that brought nothing was a failed reconnect, and once
        they have failed for `warn_after_seconds` the outage is reported, once."""
        if self._connected:
            log.debug(
                "registry change feed ended", ended=ended, applied_revision=self.applied_revision
            )
        elif not heard:
            log.debug("registry change feed not reached", ended=ended)
        self._connected = False
        if self._down_since is None:
            self._down_since = self._clock()
        down_seconds = self._clock() - self._down_since
        if not heard and not self._warned and down_seconds >= self._warn_after:
            self._warned = True
            log.warning(
                "registry change feed down",
                ended=ended,
                down_seconds=round(down_seconds, 1),
                applied_revision=self.applied_revision,
            )

    def _up(self) -> None:
        """The first message of a stream: the feed is up (again)."""
        if self._warned:
            down_seconds = self._clock() - (self._down_since or 0.0)
            log.info(
                "registry change feed up",
                applied_revision=self.applied_revision,
                down_seconds=round(down_seconds, 1),
            )
        elif not self._ever_connected:
            log.info("registry change feed up", applied_revision=self.applied_revision)
        else:
            log.debug("registry change feed reconnected", applied_revision=self.applied_revision)
        self._connected, self._ever_connected, self._warned = True, True, False
        self._down_since = None

    async def _follow(self) -> tuple[bool, str]:
        """Reads the feed until it ends, fails or falls silent: whether anything came, and how
        it ended (`EOF`, `SILENT` or the status code)."""
        request = pb.WatchChangesRequest(after_revision=self.applied_revision)
        stream = self._stub.WatchChanges(request)
        heard = False
        try:
            while True:
                try:
                    response = await asyncio.wait_for(stream.read(), self._silence)
                except TimeoutError:
                    return heard, "SILENT"  # silent too long: reconnect
                if response is grpc.aio.EOF:
                    return heard, "EOF"
                assert isinstance(response, pb.WatchChangesResponse)
                heard = True
                if response.changes:
                    self._decisions.clear()
                if not self._connected:
                    self._up()
                async with self._advanced:
                    self.applied_revision = max(self.applied_revision, response.head_revision)
                    self._advanced.notify_all()
                if response.changes:  # rare: say how far this process has followed
                    log.debug("registry changes applied", applied_revision=self.applied_revision)
        except grpc.aio.AioRpcError as exc:
            return heard, exc.code().name
        finally:
            stream.cancel()
