"""Channels for the hub's own clients: each service's client defaults, and tracing.

The defaults live beside each contract as a gRPC service config
(`protos/vkp/<area>/v1/<area>_grpc_service_config.json`, copied next to the generated stubs):
a deadline per method, retries only for methods a repeat cannot harm (those the proto marks
`idempotency_level` IDEMPOTENT or NO_SIDE_EFFECTS) and only on UNAVAILABLE, and round-robin
over the addresses a `dns:///` target resolves to, so replicas share the load.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors


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


def insecure_channel(target: str, service: str) -> grpc.aio.Channel:
    """A traced channel to one of the hub's services, with its client defaults.

    `target` is host:port, or dns:///name:port to balance over every address of a headless
    Kubernetes Service.
    """
    return grpc.aio.insecure_channel(
        target, options=channel_options(service), interceptors=aio_client_interceptors()
    )
