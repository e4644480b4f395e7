"""Journaled notes counted once however they reached the record: `vkp.journaling.journaled` (by
municipality) — a pushed note the EPJ confirmed, or a pulled one it acknowledged. Whoever
committed the entry as JOURNALED tells `JournaledNotes`, once per entry."""

from __future__ import annotations

from opentelemetry import metrics

#: The counter's name.
COUNTER = "vkp.journaling.journaled"


class JournaledNotes:
    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter("vkp.journaling", meter_provider=meter_provider)
        self._counter = meter.create_counter(COUNTER, description="Notes in the EPJ's record.")

    def journaled(self, municipality: str, count: int = 1) -> None:
        """`count` of the municipality's notes were committed as journaled."""
        self._counter.add(count, {"municipality": municipality})
