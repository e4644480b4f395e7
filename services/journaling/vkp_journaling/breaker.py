"""A circuit breaker per municipality's EPJ: after `threshold` failures in a row the municipality
is paused for a cool-down (doubling up to `max_cooldown`), then one delivery probes it; success
closes the breaker. Other municipalities are never held up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    probing: bool = False


class Breakers:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown_seconds: float = 2.0,
        max_cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._max = max_cooldown_seconds
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def is_open(self, municipality: str) -> bool:
        b = self._breakers.get(municipality)
        return b is not None and b.failures >= self._threshold

    def paused(self) -> list[str]:
        """The municipalities no delivery may start for now."""
        now = self._clock()
        return [
            m
            for m, b in self._breakers.items()
            if b.failures >= self._threshold and (now < b.open_until or b.probing)
        ]

    def starting(self, municipality: str) -> None:
        """A delivery starts: when the breaker is open (cool-down over), it is the probe."""
        b = self._breakers.get(municipality)
        if b is not None and b.failures >= self._threshold:
            b.probing = True

    def success(self, municipality: str) -> None:
        self._breakers.pop(municipality, None)

    def failure(self, municipality: str) -> None:
        b = self._breakers.setdefault(municipality, _Breaker())
        b.failures += 1
        b.probing = False
        if b.failures >= self._threshold:
            b.cooldown = min(self._max, b.cooldown * 2 if b.cooldown else self._cooldown)
            b.open_until = self._clock() + b.cooldown
