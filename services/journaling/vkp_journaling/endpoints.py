"""Municipalities' EPJ endpoints, from the registry (cached a while), with their credentials
resolved by reference: the endpoint names a secret; its value comes from the environment
(`VKP_EPJ_SECRET_<NAME>`, the name upper-cased with - and . as _) or a file of that name in the
secrets folder, and is sent as the Authorization header. The registry never holds the secret.

An endpoint that names no secret needs no credentials: nothing to report. One that names a
secret this service cannot find is a deployment to fix (the EPJ will most likely refuse the
notes): a warning, once per endpoint and secret name, not at every look-up; it is sent without.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import grpc

from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_journaling.epj import Endpoint
from vkp_lib import names
from vkp_lib.logging import get_logger

log = get_logger("vkp.journaling.endpoints")


def secret(name: str, folder: Path | None) -> str:
    """The secret called `name`, or empty when there is none."""
    variable = "VKP_EPJ_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    if variable in os.environ:
        return os.environ[variable].strip()
    if folder is not None and (folder / name).is_file():
        return (folder / name).read_text().strip()
    return ""


class EndpointDirectory:
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
        """The municipality's endpoint; None when it has none (or is suspended)."""
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
