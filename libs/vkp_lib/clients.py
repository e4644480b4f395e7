"""Channels for the hub's own clients: each service's client defaults, and tracing.

The defaults live beside each contract as a gRPC service config
(`protos/vkp/<area>/v1/<area>_grpc_service_config.json`, copied next to the generated stubs):
a deadline per method, retries only for methods a repeat cannot harm (those the proto marks
`idempotency_level` IDEMPOTENT or NO_SIDE_EFFECTS) and only on UNAVAILABLE, and round-robin
over the addresses a `dns:///` target resolves to, so replicas share the load.

Calls from one hub service to another carry the caller's service token
(`authorization: Bearer …`), signed with the hub's service key; internal RPCs accept nothing
else.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from vkp_lib.identity.issuer import ServiceTokenSource


def service_config(service: str) -> dict[str, Any]:
    """The gRPC service config of a hub service, by its full name (vkp.ingest.v1.IngestService)."""
    package, _, _name = service.rpartition(".")
    area = package.split(".")[1]
    text = resources.files(package).joinpath(f"{area}_grpc_service_config.json").read_text()
    config: dict[str, Any] = json.loads(text)
    return config


def channel_options(service: str) -> list[tuple[str, Any]]:
    """The channel options that apply a hub service's client defaults."""
    return [
        ("grpc.service_config", json.dumps(service_config(service))),
        ("grpc.enable_retries", 1),
    ]


class _WithServiceToken:
    """Puts the calling service's token on every call that names no credentials of its own."""

    def __init__(self, tokens: ServiceTokenSource) -> None:
        self._tokens = tokens

    def _with_token(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if not metadata.get_all("authorization"):
            metadata["authorization"] = f"Bearer {self._tokens.token()}"
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under the first call shape it implements: one class per shape.
class _UnaryServiceToken(_WithServiceToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _StreamServiceToken(_WithServiceToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


def insecure_channel(
    target: str, service: str, tokens: ServiceTokenSource | None = None
) -> grpc.aio.Channel:
    """A traced channel to one of the hub's services, with its client defaults; with `tokens`,
    every call carries the calling service's token.

    `target` is host:port, or dns:///name:port to balance over every address of a headless
    Kubernetes Service.
    """
    interceptors: list[Any] = list(aio_client_interceptors())
    if tokens is not None:
        interceptors += [_UnaryServiceToken(tokens), _StreamServiceToken(tokens)]
    return grpc.aio.insecure_channel(
        target, options=channel_options(service), interceptors=interceptors
    )
