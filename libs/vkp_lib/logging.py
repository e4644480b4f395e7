"""Structured JSON logging to stderr, one object per line, for every service.

structlog renders; records from the standard library (grpc, sqlalchemy, ...) go through the same
renderer, so an SRE gets one format. Each line carries the service, the request id and method of
the call it belongs to (one context variable, set by the runner's call interceptor and read only
when a line is logged) and the trace and span ids.
Never log health data: log pseudonymised ids, kinds and counts, not content.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Protocol

import structlog
from opentelemetry import trace


class LoggedCall(Protocol):
    """The call a log line belongs to (the runner's call interceptor binds it)."""

    @property
    def request_id(self) -> str: ...

    @property
    def rpc(self) -> str: ...


_call: contextvars.ContextVar[LoggedCall | None] = contextvars.ContextVar("vkp_call", default=None)


def bind_call(call: LoggedCall) -> None:
    """Names `call` in every line logged from here on in this context (the call's task); its
    request id is read only when a line is logged."""
    _call.set(call)


def current_request_id() -> str:
    """The request id of the call being served (the runner binds it); empty outside a call."""
    call = _call.get()
    return call.request_id if call is not None else ""


def _add_call(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    call = _call.get()
    if call is not None:
        event.setdefault("request_id", call.request_id)
        event.setdefault("rpc", call.rpc)
    return event


def _add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    _add_call,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_trace_ids,
]


def json_formatter() -> logging.Formatter:
    """The formatter that renders every record as one JSON object."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )


#: Libraries whose INFO and DEBUG lines carry full URLs (with query strings) or payloads.
QUIET_LOGGERS = ("httpx", "httpcore", "hpack")


def configure_structlog() -> None:
    """Route structlog through the standard library, where the JSON formatter renders it, and
    keep the loggers of libraries that log URLs or payloads at WARNING."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record, structlog's and the standard library's, as JSON lines to stderr."""
    configure_structlog()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
