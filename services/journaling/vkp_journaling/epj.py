"""The `fhir` EPJ adapter: a note (a transaction Bundle of conditional creates) to the EPJ.

Success is HTTP 200 with every `entry.response.status` 201 (created) or 200 (there already: a
repeat). 412 and the other 4xx are permanent; 5xx, timeouts and dropped connections are
transient. The URL carries no national id (the note goes in the body); the span has no query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from vkp_journaling.domain.delivery import (
    JOURNALED,
    Failure,
    Outcome,
    Result,
    epj_error,
    epj_rejected,
)
from vkp_lib.telemetry import httpx_async_request_hook

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a municipality's EPJ, with its credentials resolved."""

    municipality: str
    base_url: str
    pull: bool
    authorization: str = ""  # the header value, or empty
    request_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0


def _all_stored(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return False
    statuses = [str((e.get("response") or {}).get("status", "")) for e in body.get("entry") or []]
    return bool(statuses) and all(s.startswith(("201", "200")) for s in statuses)


class FhirAdapter:
    def __init__(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        HTTPXClientInstrumentor.instrument_client(
            self._client, request_hook=httpx_async_request_hook
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver(self, endpoint: Endpoint, bundle: dict[str, Any]) -> Outcome:
        headers = {"content-type": FHIR_JSON, "accept": FHIR_JSON}
        if endpoint.authorization:
            headers["authorization"] = endpoint.authorization
        timeout = httpx.Timeout(
            endpoint.request_timeout_seconds, connect=endpoint.connect_timeout_seconds
        )
        try:
            response = await self._client.post(
                endpoint.base_url.rstrip("/"), json=bundle, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException:
            return Outcome(Result.TRANSIENT, Failure.EPJ_TIMEOUT)
        except httpx.TransportError:
            return Outcome(Result.TRANSIENT, Failure.EPJ_UNAVAILABLE)
        if response.status_code >= 500:
            return Outcome(Result.TRANSIENT, epj_error(response.status_code))
        if response.status_code == 412:
            return Outcome(Result.PERMANENT, Failure.EPJ_PRECONDITION_FAILED)
        if response.status_code != 200:
            return Outcome(Result.PERMANENT, epj_rejected(response.status_code))
        try:
            body = response.json()
        except ValueError:
            return Outcome(Result.TRANSIENT, Failure.EPJ_BAD_RESPONSE)
        if not _all_stored(body):
            return Outcome(Result.PERMANENT, Failure.EPJ_NOT_STORED)
        return JOURNALED
