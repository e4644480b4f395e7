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


async def wait_for(
    epj: httpx.AsyncClient,
    expected: int,
    seconds: float,
    municipality: SandboxMunicipality | None = None,
) -> float:
    """Waits until the simulator holds `expected` notes, at most `seconds`; the seconds waited."""
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        if await count(epj, municipality) >= expected:
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - began


@dataclass(frozen=True)
class Journaled:
    """Accepted events against the notes stored: latencies (seconds; inf for an event with no
    note), lost and duplicated counts, and notes of events this run did not accept."""

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
