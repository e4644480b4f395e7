"""The `fhir` EPJ adapter's journaling part: a note (a transaction Bundle of conditional creates)
POSTed to the EPJ's base, and what the answer means. Where the EPJ is, and the HTTP to it (one
aiohttp session, a client span per request carrying the trace context, the endpoint's timeouts
and credentials), are the shared adapter's (`vkp_lib.fhir`), which lookup reads through too.

Success is HTTP 200 with every `entry.response.status` 201 (created) or 200 (there already: a
repeat). 412 and the other 4xx are permanent; 5xx, timeouts and dropped connections are
transient. The URL carries no national id (the note goes in the body); the span has no query.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import trace
from yarl import URL

from vkp_journaling.domain.delivery import (
    JOURNALED,
    Failure,
    Outcome,
    Result,
    epj_error,
    epj_rejected,
)
from vkp_lib.fhir import Endpoint, EpjTimeout, EpjUnavailable, FhirClient

#: The tracer the EPJ calls' spans are made with.
TRACER = "vkp.journaling.epj"


def fhir_json(bundle: dict[str, Any]) -> bytes:
    """A note as sent to an EPJ (and as an EPJ that pulls fetches it): compact UTF-8 JSON."""
    text = json.dumps(bundle, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode()


def _all_stored(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return False
    statuses = [str((e.get("response") or {}).get("status", "")) for e in body.get("entry") or []]
    return bool(statuses) and all(s.startswith(("201", "200")) for s in statuses)


class FhirAdapter:
    """Notes to EPJs over the shared FHIR client. Made on start, in the running loop (the
    lifespan): the client's session belongs to it; `close` it there."""

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._client = FhirClient(name=TRACER, tracer_provider=tracer_provider)
        self._bases: dict[str, URL] = {}

    async def close(self) -> None:
        await self._client.close()

    def _base(self, endpoint: Endpoint) -> URL:
        """Where a transaction goes: the endpoint's FHIR base (worked out once per base)."""
        base = self._bases.get(endpoint.base_url)
        if base is None:
            if len(self._bases) > 1000:  # endpoints change rarely; never grow without end
                self._bases.clear()
            base = self._bases[endpoint.base_url] = URL(endpoint.base_url.rstrip("/"))
        return base

    async def deliver(self, endpoint: Endpoint, bundle: dict[str, Any]) -> Outcome:
        try:
            response = await self._client.request(
                endpoint, "POST", self._base(endpoint), data=fhir_json(bundle)
            )
        except EpjTimeout:
            return Outcome(Result.TRANSIENT, Failure.EPJ_TIMEOUT)
        except EpjUnavailable:
            return Outcome(Result.TRANSIENT, Failure.EPJ_UNAVAILABLE)
        return _outcome(response.status, response.body)


def _outcome(status: int, content: bytes) -> Outcome:
    """What the EPJ's answer means."""
    if status >= 500:
        return Outcome(Result.TRANSIENT, epj_error(status))
    if status == 412:
        return Outcome(Result.PERMANENT, Failure.EPJ_PRECONDITION_FAILED)
    if status != 200:
        return Outcome(Result.PERMANENT, epj_rejected(status))
    try:
        answer = json.loads(content)
    except ValueError:
        return Outcome(Result.TRANSIENT, Failure.EPJ_BAD_RESPONSE)
    if not _all_stored(answer):
        return Outcome(Result.PERMANENT, Failure.EPJ_NOT_STORED)
    return JOURNALED
