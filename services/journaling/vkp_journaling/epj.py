"""The `fhir` EPJ adapter: a note (a transaction Bundle of conditional creates) to the EPJ.

Success is HTTP 200 with every `entry.response.status` 201 (created) or 200 (there already: a
repeat). 412 and the other 4xx are permanent; 5xx, timeouts and dropped connections are
transient. The URL carries no national id (the note goes in the body); the span has no query.

The notes go through one aiohttp client session (connections kept alive, one per delivery in
flight), about a fifth of httpx's CPU per request. Each request is a client span named by its
method, as OpenTelemetry's HTTP conventions have it (made here: the aiohttp client
instrumentation is not released for the OpenTelemetry version the hub uses), and carries the
trace context (W3C traceparent) on to the EPJ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from opentelemetry import propagate, trace
from yarl import URL

from vkp_journaling.domain.delivery import (
    JOURNALED,
    Failure,
    Outcome,
    Result,
    epj_error,
    epj_rejected,
)
from vkp_lib.telemetry import strip_query

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


def fhir_json(bundle: dict[str, Any]) -> bytes:
    """A note as sent to an EPJ (and as an EPJ that pulls fetches it): compact UTF-8 JSON."""
    text = json.dumps(bundle, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode()


def _all_stored(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return False
    statuses = [str((e.get("response") or {}).get("status", "")) for e in body.get("entry") or []]
    return bool(statuses) and all(s.startswith(("201", "200")) for s in statuses)


@dataclass(frozen=True)
class _Target:
    """An endpoint's request, worked out once: its URL, headers and timeout."""

    url: URL
    attributes: dict[str, str | int]
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout


class FhirAdapter:
    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        # Made on start, in the running loop (the lifespan): the session belongs to it.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )
        self._tracer = trace.get_tracer("vkp.journaling.epj", tracer_provider=tracer_provider)
        self._targets: dict[Endpoint, _Target] = {}

    async def close(self) -> None:
        await self._session.close()

    def _target(self, endpoint: Endpoint) -> _Target:
        target = self._targets.get(endpoint)
        if target is None:
            url = URL(endpoint.base_url.rstrip("/"))
            headers = {"content-type": FHIR_JSON, "accept": FHIR_JSON}
            if endpoint.authorization:
                headers["authorization"] = endpoint.authorization
            target = _Target(
                url=url,
                attributes={
                    "http.request.method": "POST",
                    "url.full": strip_query(str(url)),
                    "server.address": url.host or "",
                    "server.port": url.port or 0,
                },
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=endpoint.request_timeout_seconds,
                    connect=endpoint.connect_timeout_seconds,
                ),
            )
            if len(self._targets) > 1000:  # endpoints change rarely; never grow without end
                self._targets.clear()
            self._targets[endpoint] = target
        return target

    async def deliver(self, endpoint: Endpoint, bundle: dict[str, Any]) -> Outcome:
        target = self._target(endpoint)
        body = fhir_json(bundle)
        with self._tracer.start_as_current_span(
            "POST", kind=trace.SpanKind.CLIENT, attributes=target.attributes
        ) as span:
            headers = dict(target.headers)
            propagate.inject(headers)
            try:
                async with self._session.post(
                    target.url,
                    data=body,
                    headers=headers,
                    timeout=target.timeout,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    content = await response.read()
            except TimeoutError:
                return _failed(span, "timeout", Outcome(Result.TRANSIENT, Failure.EPJ_TIMEOUT))
            except (aiohttp.ClientError, OSError) as error:
                return _failed(
                    span,
                    type(error).__qualname__,
                    Outcome(Result.TRANSIENT, Failure.EPJ_UNAVAILABLE),
                )
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_status(trace.StatusCode.ERROR)
        return _outcome(status, content)


def _failed(span: trace.Span, error_type: str, outcome: Outcome) -> Outcome:
    span.set_attribute("error.type", error_type)
    span.set_status(trace.StatusCode.ERROR)
    return outcome


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
