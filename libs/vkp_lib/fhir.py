"""The `fhir` EPJ adapter's shared part: where a municipality's EPJ is, and one HTTP client for it.

- `EndpointDirectory`: a municipality's EPJ endpoint from the registry (`GetEpjEndpoint`, cached
  a while), with its credentials resolved by reference: the endpoint names a secret; its value
  comes from the environment (`VKP_EPJ_SECRET_<NAME>`, the name upper-cased with - and . as _) or
  a file of that name in the secrets folder, and is sent as the Authorization header. The
  registry never holds the secret. A secret named but not found is a deployment to fix: one
  warning per endpoint and secret name; requests go without.
- `FhirClient`: one aiohttp session (connections kept alive) for every endpoint. Reads go by
  logical id (`GET [type]/[id]`) or by `POST [type]/_search` with a form body, so no national
  id is ever in a URL (URLs end up in logs and spans); a search follows the EPJ's next links
  (opaque tokens) to its last page. Each request is a client span named by its method, with the
  URL without its query and never a body; it carries the W3C trace context on to the EPJ. Each
  request has the endpoint's timeouts, and a caller may bound several with `asyncio.timeout`.
  A timeout raises `EpjTimeout`; a refused or dropped connection, or a 5xx, `EpjUnavailable`;
  any other unexpected answer `EpjError`.

Journaling's note delivery and lookup's reads share this (journaling's adapter keeps its own
transaction call and outcome rules).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import grpc
from opentelemetry import propagate, trace
from yarl import URL

from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_lib import names
from vkp_lib.logging import get_logger
from vkp_lib.telemetry import strip_query

log = get_logger("vkp.fhir")

FHIR_JSON = "application/fhir+json"
Json = dict[str, Any]
#: The most pages one search follows: a bound on what one read can cost.
MAX_PAGES = 50


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a municipality's EPJ, with its credentials resolved."""

    municipality: str
    base_url: str
    pull: bool = False
    authorization: str = ""  # the header value, or empty
    request_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0


class EpjFailure(Exception):
    """The EPJ did not give what was asked. The message holds no health data."""


class EpjTimeout(EpjFailure):
    """The EPJ did not answer in time."""


class EpjUnavailable(EpjFailure):
    """The EPJ could not be reached, or answered with a server error."""


class EpjError(EpjFailure):
    """The EPJ answered, but not as FHIR says it should (a 4xx, or a body that is no Bundle)."""


def secret(name: str, folder: Path | None) -> str:
    """The secret called `name`, or empty when there is none."""
    variable = "VKP_EPJ_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    if variable in os.environ:
        return os.environ[variable].strip()
    if folder is not None and (folder / name).is_file():
        return (folder / name).read_text().strip()
    return ""


class EndpointDirectory:
    """Municipalities' EPJ endpoints from the registry, each kept `ttl_seconds`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        secrets_dir: Path | None = None,
        ttl_seconds: float = 30.0,
    ) -> None:
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)
        self._secrets = secrets_dir
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Endpoint | None]] = {}
        self._missing: dict[str, str] = {}  # municipality -> the secret reported missing

    async def get(self, municipality: str) -> Endpoint | None:
        """The municipality's endpoint; None when it has none (or is suspended). Raises
        grpc.aio.AioRpcError when the registry cannot be asked."""
        cached = self._cache.get(municipality)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        try:
            found = await self._stub.GetEpjEndpoint(
                pb.GetEpjEndpointRequest(
                    name=names.EPJ_ENDPOINT.format(organization_number=municipality)
                )
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            self._cache[municipality] = (time.monotonic(), None)
            return None
        endpoint = self._endpoint(municipality, found)
        self._cache[municipality] = (time.monotonic(), endpoint)
        return endpoint

    def _endpoint(self, municipality: str, found: pb.GetEpjEndpointResponse) -> Endpoint | None:
        if found.municipality_state == pb.MUNICIPALITY_STATE_SUSPENDED:
            return None
        e = found.epj_endpoint
        return Endpoint(
            municipality=municipality,
            base_url=e.base_url,
            pull=e.delivery_mode == pb.DELIVERY_MODE_PULL,
            authorization=self._authorization(municipality, e.credentials_secret),
            request_timeout_seconds=e.request_timeout.ToTimedelta().total_seconds()
            if e.HasField("request_timeout")
            else 10.0,
            connect_timeout_seconds=e.connect_timeout.ToTimedelta().total_seconds()
            if e.HasField("connect_timeout")
            else 3.0,
        )

    def _authorization(self, municipality: str, name: str) -> str:
        """The Authorization header for the endpoint's secret `name` ("" when it needs none)."""
        if not name:
            return ""
        token = secret(name, self._secrets)
        if token:
            self._missing.pop(municipality, None)
            return f"Bearer {token}"
        if self._missing.get(municipality) != name:
            self._missing[municipality] = name
            log.warning("EPJ credentials not found", municipality=municipality, secret=name)
        return ""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class FhirClient:
    """HTTP to EPJs: one aiohttp session. Made in the running loop (a lifespan): the session
    belongs to it; `close` it there."""

    def __init__(
        self, *, name: str = "vkp.fhir", tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )
        self._tracer = trace.get_tracer(name, tracer_provider=tracer_provider)

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        url: URL,
        *,
        data: bytes | None = None,
        content_type: str = FHIR_JSON,
    ) -> Response:
        """One request to the endpoint's EPJ: its status and body. Raises `EpjTimeout` or
        `EpjUnavailable` when no answer came."""
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.full": strip_query(str(url)),
            "server.address": url.host or "",
            "server.port": url.port or 0,
        }
        headers = {"accept": FHIR_JSON}
        if data is not None:
            headers["content-type"] = content_type
        if endpoint.authorization:
            headers["authorization"] = endpoint.authorization
        timeout = aiohttp.ClientTimeout(
            total=endpoint.request_timeout_seconds, connect=endpoint.connect_timeout_seconds
        )
        with self._tracer.start_as_current_span(
            method, kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            propagate.inject(headers)
            try:
                async with self._session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    body = await response.read()
            except TimeoutError:
                _failed(span, "timeout")
                raise EpjTimeout("the EPJ did not answer in time") from None
            except (aiohttp.ClientError, OSError) as error:
                _failed(span, type(error).__qualname__)
                raise EpjUnavailable("the EPJ could not be reached") from None
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_status(trace.StatusCode.ERROR)
        return Response(status, body)

    async def read(self, endpoint: Endpoint, resource_type: str, resource_id: str) -> Json | None:
        """A resource by its logical id; None when the EPJ has none (404, 410)."""
        url = _base(endpoint) / resource_type / resource_id
        response = await self.request(endpoint, "GET", url)
        if response.status in (404, 410):
            return None
        resource = _json(_checked(response))
        if resource.get("resourceType") != resource_type:
            raise EpjError(f"the EPJ's answer to a {resource_type} read is no {resource_type}")
        return resource

    async def search(
        self,
        endpoint: Endpoint,
        resource_type: str,
        parameters: Sequence[tuple[str, str]] | Mapping[str, str],
    ) -> list[Json]:
        """Every resource of `resource_type` that matches, by `POST [type]/_search` (the
        parameters in the form body), following the next links; included resources of other
        types are left out."""
        url = _base(endpoint) / resource_type / "_search"
        response = await self.request(
            endpoint,
            "POST",
            url,
            data=urlencode(_pairs(parameters)).encode(),
            content_type="application/x-www-form-urlencoded",
        )
        found: list[Json] = []
        for _ in range(MAX_PAGES):
            bundle = _json(_checked(response))
            if bundle.get("resourceType") != "Bundle":
                raise EpjError("the EPJ's answer to a search is no Bundle")
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                    found.append(resource)
            following = _next_link(bundle)
            if following is None:
                return found
            response = await self.request(endpoint, "GET", URL(following))
        raise EpjError(f"the EPJ's search has more than {MAX_PAGES} pages")


def _failed(span: trace.Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(trace.StatusCode.ERROR)


def _base(endpoint: Endpoint) -> URL:
    return URL(endpoint.base_url.rstrip("/"))


def _pairs(parameters: Sequence[tuple[str, str]] | Mapping[str, str]) -> list[tuple[str, str]]:
    if isinstance(parameters, Mapping):
        return list(parameters.items())
    return list(parameters)


def _checked(response: Response) -> bytes:
    if response.status >= 500:
        raise EpjUnavailable(f"the EPJ answered HTTP {response.status}")
    if response.status != 200:
        raise EpjError(f"the EPJ answered HTTP {response.status}")
    return response.body


def _json(body: bytes) -> Json:
    try:
        value = json.loads(body)
    except ValueError:
        raise EpjError("the EPJ's answer is not JSON") from None
    if not isinstance(value, dict):
        raise EpjError("the EPJ's answer is not a FHIR resource")
    return value


def _next_link(bundle: Json) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None
