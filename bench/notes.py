"""What arrived in the EPJ: the notes the simulator stored, read over its FHIR API (and its
control endpoint to clear them), and compared with the events the hub accepted.

A home measurement's note is one Observation with the identifier `urn:vkp:journal-note|<entry
id>/1`, where the entry id is the hub's id of the event (its receipt's `events/{id}`); the
simulator stamps `meta.lastUpdated` when it stores it. So acceptance to journaled is that time
less the receipt's `receive_time`, lost is an accepted event without a note, and duplicated is
a note identifier stored more than once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx
from load import percentile

from vkp_lib.sandbox import SandboxMunicipality

NOTE_SYSTEM = "urn:vkp:journal-note"
_NOTES = {"identifier": f"{NOTE_SYSTEM}|"}


def _base(municipality: SandboxMunicipality | None) -> str:
    return f"/{municipality.municipality_number}/fhir" if municipality else ""


async def clear(epj: httpx.AsyncClient) -> None:
    """Deletes every note the simulator received (the seed stays)."""
    (await epj.delete("/_control/notes")).raise_for_status()


async def count(epj: httpx.AsyncClient, municipality: SandboxMunicipality | None = None) -> int:
    """How many notes the simulator holds (of one municipality)."""
    response = await epj.get(
        f"{_base(municipality)}/Observation", params={**_NOTES, "_summary": "count"}
    )
    response.raise_for_status()
    total: int = response.json()["total"]
    return total


async def transactions(epj: httpx.AsyncClient) -> int:
    """How many transaction Bundles (deliveries, retries included) the simulator has taken."""
    response = await epj.get("/_control/counters")
    response.raise_for_status()
    counts: dict[str, int] = response.json()
    return sum(n for key, n in counts.items() if key.endswith(" transaction"))


async def stored(
    epj: httpx.AsyncClient, municipality: SandboxMunicipality | None = None
) -> list[tuple[str, float]]:
    """Every note: (its identifier's entry id, when the simulator stored it, epoch seconds)."""
    notes: list[tuple[str, float]] = []
    url: str | None = f"{_base(municipality)}/Observation"
    params: dict[str, str] | None = {**_NOTES, "_count": "1000"}
    while url:
        response = await epj.get(url, params=params)
        response.raise_for_status()
        bundle = response.json()
        for entry in bundle.get("entry", ()):
            resource = entry["resource"]
            when = datetime.fromisoformat(resource["meta"]["lastUpdated"]).timestamp()
            for identifier in resource.get("identifier", ()):
                if identifier.get("system") == NOTE_SYSTEM:
                    notes.append((identifier["value"].partition("/")[0], when))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        params = None
    return notes


ALL_IN = "all journaled"


@dataclass(frozen=True)
class Drained:
    """How a wait for notes ended: after how long, with how many stored, and why."""

    seconds: float
    stored: int
    #: "all journaled", "no progress for N s" or "stopped at the N s cap".
    end: str

    @property
    def complete(self) -> bool:
        return self.end == ALL_IN


async def drain(
    epj: httpx.AsyncClient,
    expected: int,
    *,
    stall_seconds: float,
    max_seconds: float,
    municipality: SandboxMunicipality | None = None,
    poll_seconds: float = 0.5,
) -> Drained:
    """Waits until the simulator holds `expected` notes (of `municipality`, or of all), or it
    has stored none for `stall_seconds` (the hub stopped making progress), or `max_seconds`
    (a cap, so a hub crawling along still ends the run) have passed."""
    began = time.perf_counter()
    stored, progressed = -1, began
    while True:
        now_stored = await count(epj, municipality)
        now = time.perf_counter()
        if now_stored >= expected:
            return Drained(now - began, now_stored, ALL_IN)
        if now_stored != stored:
            stored, progressed = now_stored, now
        elif now - progressed >= stall_seconds:
            return Drained(now - began, stored, f"no progress for {stall_seconds:g} s")
        if now - began >= max_seconds:
            return Drained(now - began, stored, f"stopped at the {max_seconds:g} s cap")
        await asyncio.sleep(poll_seconds)


@dataclass(frozen=True)
class Journaled:
    """Accepted events against the notes stored: latencies (seconds, each event's own however
    late; inf for an event with no note), the accepted events without a note (`lost`: read once
    the drain has ended, so not journaled at all), duplicated notes, and notes of events this
    run did not accept."""

    latencies: list[float]
    lost: int
    duplicated: int
    unexpected: int

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    @property
    def journaled(self) -> int:
        return sum(1 for x in self.latencies if not math.isinf(x))


def compare(accepted: Mapping[str, float], notes: list[tuple[str, float]]) -> Journaled:
    """`accepted`: entry id -> receive time (epoch seconds); `notes` as `stored` gives them."""
    copies = Counter(entry for entry, _ in notes)
    first: dict[str, float] = {}
    for entry, when in notes:
        first[entry] = min(when, first.get(entry, when))
    latencies = [
        first[entry] - received if entry in first else math.inf
        for entry, received in accepted.items()
    ]
    return Journaled(
        latencies=latencies,
        lost=sum(1 for entry in accepted if entry not in first),
        duplicated=sum(n - 1 for n in copies.values() if n > 1),
        unexpected=sum(1 for entry in copies if entry not in accepted),
    )
