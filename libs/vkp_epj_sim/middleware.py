"""The middleware around every request: a server span (continuing the caller's W3C trace), one
log line, errors as OperationOutcomes (JSON on the control endpoint), and injected faults
turned into what the client meets.

The log line and the span name the method, the route, the path (logical ids only; a run of 11
digits is masked all the same) and the status, never the query string or a body: a search's
values, such as a national id, never reach the log.
"""

from __future__ import annotations

import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import propagate, trace

from vkp_epj_sim.faults import ClientGone, Injected
from vkp_epj_sim.fhir_api import Dropped, FhirError, outcome
from vkp_lib.logging import get_logger

log = get_logger("vkp_epj_sim")
tracer = trace.get_tracer("vkp_epj_sim")
_ELEVEN_DIGITS = re.compile(r"\d{11}")
_ISSUE_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def loggable_path(path: str) -> str:
    return _ELEVEN_DIGITS.sub("*" * 11, path)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/_control"):
        return web.json_response({"error": message}, status=status)
    return outcome(status, _ISSUE_CODES.get(status, "processing"), message)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "(no route)"
    path = loggable_path(request.path)
    municipality = request.match_info.get("municipality")
    context = propagate.extract(dict(request.headers))
    with tracer.start_as_current_span(
        f"{request.method} {route}", context=context, kind=trace.SpanKind.SERVER
    ) as span:
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("http.route", route)
        span.set_attribute("url.path", path)
        if municipality:
            span.set_attribute("vkp.municipality", municipality)
        what = "answered"
        try:
            response = await handler(request)
        except FhirError as exc:
            response = exc.response
        except Injected as exc:
            response, what = outcome(exc.status, "transient", exc.reason), "fault injected"
        except ClientGone:
            response, what = web.Response(status=504), "held until the client gave up"
        except Dropped:
            if request.transport is not None:
                request.transport.abort()
            response, what = web.Response(status=204), "stored, then dropped unanswered"
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error(request, exc.status, exc.reason)
        except Exception as exc:
            log.error("request failed", path=path, error=type(exc).__name__)
            response = _error(request, 500, "internal error")
        span.set_attribute("http.response.status_code", response.status)
        log.info(
            "request",
            method=request.method,
            path=path,
            municipality=municipality,
            status=response.status,
            outcome=what,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
    return response
