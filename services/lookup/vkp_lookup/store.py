"""Where lookup reads: lookup owns no system of record. It reads the municipality's EPJ through
the shared `fhir` adapter (`vkp_lib.fhir`: by logical id or `POST [type]/_search`, never a
national id in a URL), and this is the only place that knows how.

One method per kind of data, each one EPJ read (all the pages of one search) within
`deadline_seconds`, through the cache (`vkp_lib.cache`) when there is one: `_read` (a kind, the
parts of its key, and the fetch). Every read says when its data was fetched and whether it is
stale. `cached` gives several kinds' fresh cached reads with one read of the cache and never an
EPJ fetch: what lookup may read before its access decision, and how it reads the kinds of one
answer together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc

from vkp_lib.cache import Cache, FetchFailed, FetchTimeout
from vkp_lib.epj_profile import CAREPLAN_CATEGORY_SYSTEM, VISIT_PLAN_CODE
from vkp_lib.fhir import EndpointDirectory, EpjTimeout, EpjUnavailable, FhirClient
from vkp_lib.logging import get_logger
from vkp_lookup.domain.model import Freshness

log = get_logger("vkp.lookup.store")

Json = dict[str, Any]

#: The kinds of data, each cached with the demographics' TTL or the services' (settings.py).
DEMOGRAPHICS = ("patient", "patients", "next_of_kin", "practitioner")
SERVICES = ("episodes", "active_episodes", "visit_plans", "critical")
KINDS = frozenset(DEMOGRAPHICS + SERVICES)


def cache_ttls(demographics_seconds: float, services_seconds: float) -> dict[str, float]:
    """The fresh TTL of each kind."""
    return {kind: demographics_seconds for kind in DEMOGRAPHICS} | {
        kind: services_seconds for kind in SERVICES
    }


#: A read named by its kind and its parts: the arguments of the kind's method after the
#: municipality, e.g. ("patient", (system, national_id)) or ("episodes", (patient_id,)).
Wanted = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, repr=False)
class Read:
    """The resources of one read, and how fresh they are."""

    resources: list[Json]
    freshness: Freshness

    def __repr__(self) -> str:  # never the resources
        return f"Read({len(self.resources)} resources, {self.freshness!r})"


class PatientRecords:
    """The EPJ data lookup needs, per municipality (its organisation number)."""

    def __init__(
        self,
        fhir: FhirClient,
        endpoints: EndpointDirectory,
        *,
        deadline_seconds: float,
        cache: Cache | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._fhir = fhir
        self._endpoints = endpoints
        self._deadline = deadline_seconds
        self._cache = cache
        self._clock = clock

    async def cached(self, municipality: str, wanted: Sequence[Wanted]) -> dict[Wanted, Read]:
        """The fresh cached reads among `wanted` (one read of the cache: a single MGET), never
        an EPJ fetch; none without a cache or while it cannot be read."""
        if self._cache is None or not wanted:
            return {}
        for kind, _ in wanted:
            if kind not in KINDS:
                raise ValueError(f"unknown kind of read {kind!r}")
        found = await self._cache.peek_many(
            [(kind, (municipality, *parts)) for kind, parts in wanted]
        )
        return {
            key: Read(decode(hit.value), Freshness(datetime.fromtimestamp(hit.fetched_at, UTC)))
            for key, hit in zip(wanted, found, strict=True)
            if hit is not None
        }

    async def patient(self, municipality: str, system: str, national_id: str) -> Read:
        """The Patient with this national id (none, or one; more only if the EPJ errs)."""
        return await self._search(
            "patient",
            municipality,
            (system, national_id),
            "Patient",
            [("identifier", f"{system}|{national_id}")],
        )

    async def episodes(self, municipality: str, patient_id: str) -> Read:
        """The patient's EpisodeOfCare resources, active and ended."""
        return await self._search(
            "episodes", municipality, (patient_id,), "EpisodeOfCare", [("patient", patient_id)]
        )

    async def visit_plans(self, municipality: str, patient_id: str) -> Read:
        """The patient's visit plans (CarePlan category 3)."""
        return await self._search(
            "visit_plans",
            municipality,
            (patient_id,),
            "CarePlan",
            [
                ("subject", f"Patient/{patient_id}"),
                ("category", f"{CAREPLAN_CATEGORY_SYSTEM}|{VISIT_PLAN_CODE}"),
            ],
        )

    async def next_of_kin(self, municipality: str, patient_id: str) -> Read:
        return await self._search(
            "next_of_kin",
            municipality,
            (patient_id,),
            "RelatedPerson",
            [("patient", f"Patient/{patient_id}")],
        )

    async def critical(self, municipality: str, patient_id: str) -> Read:
        """The patient's AllergyIntolerance and Flag resources (two searches, one read)."""

        async def fetch(endpoint_read: _Searcher) -> list[Json]:
            allergies, flags = await asyncio.gather(
                endpoint_read("AllergyIntolerance", [("patient", f"Patient/{patient_id}")]),
                endpoint_read("Flag", [("subject", f"Patient/{patient_id}")]),
            )
            return allergies + flags

        return await self._read("critical", municipality, (patient_id,), fetch)

    async def practitioner(self, municipality: str, practitioner_id: str) -> Read:
        """The GP's Practitioner, by its logical id (none when the EPJ has none)."""

        async def fetch(endpoint_read: _Searcher) -> list[Json]:
            return await endpoint_read("Practitioner", [("_id", practitioner_id)])

        return await self._read("practitioner", municipality, (practitioner_id,), fetch)

    async def active_episodes(self, municipality: str) -> Read:
        """Every active EpisodeOfCare of the municipality: the service recipients' services."""
        return await self._search(
            "active_episodes", municipality, (), "EpisodeOfCare", [("status", "active")]
        )

    async def patients(self, municipality: str, patient_ids: Sequence[str]) -> Read:
        """Patients by their logical ids (one search)."""
        ids = sorted(set(patient_ids))
        return await self._search(
            "patients", municipality, tuple(ids), "Patient", [("_id", ",".join(ids))]
        )

    async def _search(
        self,
        kind: str,
        municipality: str,
        parts: tuple[str, ...],
        resource_type: str,
        parameters: list[tuple[str, str]],
    ) -> Read:
        async def fetch(search: _Searcher) -> list[Json]:
            return await search(resource_type, parameters)

        return await self._read(kind, municipality, parts, fetch)

    async def _read(
        self,
        kind: str,
        municipality: str,
        parts: tuple[str, ...],
        fetch: Callable[[_Searcher], Awaitable[list[Json]]],
    ) -> Read:
        """One read of `kind`: from the cache while fresh (its key: the kind, the municipality
        and `parts`, as a keyed hash), else the EPJ's endpoint resolved and `fetch` run within
        the deadline, one fetch per key across replicas; while the EPJ fails, the cached value
        within the stale bound, flagged stale."""
        if self._cache is None:
            return Read(await self._fetch(municipality, fetch), Freshness(self._clock()))

        async def fill() -> bytes:
            return encode(await self._fetch(municipality, fetch))

        try:
            found = await self._cache.get(
                kind, (municipality, *parts), fill, deadline_seconds=self._deadline
            )
        except FetchTimeout:
            raise EpjTimeout("the EPJ did not answer in time") from None
        except FetchFailed:
            raise EpjUnavailable("another replica's read of the EPJ failed") from None
        fetched = datetime.fromtimestamp(found.fetched_at, UTC)
        return Read(decode(found.value), Freshness(fetched, stale=found.stale))

    async def _fetch(
        self, municipality: str, fetch: Callable[[_Searcher], Awaitable[list[Json]]]
    ) -> list[Json]:
        try:
            endpoint = await self._endpoints.get(municipality)
        except grpc.aio.AioRpcError as exc:
            log.warning("EPJ endpoint not found out", code=exc.code().name)
            raise EpjUnavailable("the registry cannot say where the EPJ is") from None
        if endpoint is None:
            raise EpjUnavailable("the municipality has no EPJ endpoint")

        async def search(resource_type: str, parameters: list[tuple[str, str]]) -> list[Json]:
            return await self._fhir.search(endpoint, resource_type, parameters)

        try:
            async with asyncio.timeout(self._deadline):
                return await fetch(search)
        except TimeoutError:
            raise EpjTimeout("the EPJ did not answer in time") from None


_Searcher = Callable[[str, list[tuple[str, str]]], Awaitable[list[Json]]]


def encode(resources: list[Json]) -> bytes:
    """Resources as bytes (what a cache keeps)."""
    return json.dumps(resources, ensure_ascii=False, separators=(",", ":")).encode()


def decode(value: bytes) -> list[Json]:
    resources: list[Json] = json.loads(value)
    return resources
