"""Faults injected per municipality, set at start (CLI flags) or over the control endpoint.

In the order they act on a request to a municipality's FHIR base:

- `latency_ms`: every request waits this long first;
- `outage`: every request fails 503 (and a municipality on its own listener refuses
  connections there);
- `error_count`: the next N requests fail with `error_status` (500 or 503), counting down;
- `error_rate`: each request fails with `error_status` with this probability (0..1), drawn
  from a random generator seeded per municipality, so a run repeats;
- `timeout`: the request is held, unanswered, until the client gives up;
- `refuse_connections`: a municipality's own listener is closed (it needs one);
- `drop_after_store`: a transaction is committed, then the connection is dropped unanswered.

The control endpoint and the searches that span all municipalities are never faulted.
"""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

#: How often a held request checks whether its client is still there.
_HOLD_POLL_SECONDS = 0.05


class FaultSettings(BaseModel):
    """One municipality's faults; the defaults are none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: Literal[500, 503] = 503
    error_count: int = Field(default=0, ge=0)
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    timeout: bool = False
    refuse_connections: bool = False
    drop_after_store: bool = False
    outage: bool = False

    @property
    def closes_listener(self) -> bool:
        """Whether a municipality's own listener is closed under these faults."""
        return self.refuse_connections or self.outage


NO_FAULTS = FaultSettings()


class ClientGone(Exception):
    """The client of a held request gave up; nothing is to be answered."""


class Injected(Exception):
    """A request fails by injection with this status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Faults:
    """The fault settings of every municipality, and the state they keep (the countdown and
    the random generator)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._settings: dict[str, FaultSettings] = {}
        self._random: dict[str, random.Random] = {}

    def get(self, municipality: str) -> FaultSettings:
        return self._settings.get(municipality, NO_FAULTS)

    def all(self) -> dict[str, FaultSettings]:
        return dict(self._settings)

    def set(self, municipality: str, settings: FaultSettings) -> None:
        if settings == NO_FAULTS:
            self.clear(municipality)
            return
        self._settings[municipality] = settings
        self._random[municipality] = random.Random(f"{self._seed}/{municipality}")  # noqa: S311 - repeatable, not secret

    def clear(self, municipality: str) -> None:
        self._settings.pop(municipality, None)
        self._random.pop(municipality, None)

    def clear_all(self) -> None:
        self._settings.clear()
        self._random.clear()

    async def before(self, municipality: str, request: web.Request) -> None:
        """Applies the faults a request meets before it is handled: waits, raises Injected,
        or holds the request and raises ClientGone."""
        settings = self.get(municipality)
        if settings == NO_FAULTS:
            return
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
            settings = self.get(municipality)  # they may have changed meanwhile
        if settings.outage:
            raise Injected(503, "the EPJ is down (injected outage)")
        if settings.error_count:
            self._settings[municipality] = settings.model_copy(
                update={"error_count": settings.error_count - 1}
            )
            raise Injected(settings.error_status, "injected error")
        if settings.error_rate and self._random[municipality].random() < settings.error_rate:
            raise Injected(settings.error_status, "injected error")
        if settings.timeout:
            # The transport has no event to wait on: look every few milliseconds.
            while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110 - the transport offers no event to await for its closing
                await asyncio.sleep(_HOLD_POLL_SECONDS)
            raise ClientGone

    def drops_after_store(self, municipality: str) -> bool:
        return self.get(municipality).drop_after_store
