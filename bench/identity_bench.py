"""The cost of proving who calls: token and DPoP proof verification, against the server time
of one no-op RPC (the baseline of the runner benchmark, measured in the same run)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from report import Row

from vkp_lib.identity.dpop import DpopKey, DpopVerifier, MemoryReplayCache
from vkp_lib.identity.issuer import (
    DEFAULT_AUDIENCE,
    DEV_ISSUER,
    SERVICE_AUDIENCE,
    SERVICE_ISSUER,
    SERVICE_TOKEN_TYPE,
    DevelopmentIssuer,
)
from vkp_lib.identity.keys import KeySource
from vkp_lib.identity.tokens import TokenVerifier

METHOD = "/vkp.ingest.v1.IngestService/SubmitEvent"
BASE_URL = "https://vkp.bench.example"


async def _per_call(
    work: Callable[[int], Awaitable[object]], seconds: float, limit: int = 10**9
) -> float:
    """Seconds per call of `work(i)`, over about `seconds` (at most `limit` calls)."""
    for i in range(50):  # warm up
        await work(i)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and calls < limit:
        await work(calls + 50)
        calls += 1
    return (time.perf_counter() - start) / calls


async def _measure(issuer: DevelopmentIssuer, seconds: float) -> list[tuple[str, str, float]]:
    vendor = TokenVerifier(
        KeySource(file=issuer.jwks_file), issuer=DEV_ISSUER, audience=DEFAULT_AUDIENCE
    )
    service = TokenVerifier(
        KeySource(file=issuer.service_jwks_file),
        issuer=SERVICE_ISSUER,
        audience=SERVICE_AUDIENCE,
        token_types=(SERVICE_TOKEN_TYPE,),
    )
    token = issuer.vendor_token("bench-client", ["vkp:ingest"])
    service_token = issuer.service_token("ingest")
    key = DpopKey.generate()
    bound = issuer.vendor_token("bench-client", ["vkp:ingest"], jkt=key.jkt)
    share = seconds / 4
    # Each call needs a proof of its own; signing them is not part of the measurement.
    proofs = [key.proof(BASE_URL, METHOD, bound) for _ in range(int(share * 10_000) + 50)]
    dpop = DpopVerifier(base_url=BASE_URL, window_seconds=60, replay=MemoryReplayCache())

    async def proof(i: int) -> None:
        await dpop.verify(proofs[i], access_token=bound, jkt=key.jkt, method=METHOD)

    return [
        (
            "vendor-first",
            "vendor token, first time (ES256)",
            await _per_call(lambda i: vendor._verify(token), share),
        ),
        (
            "vendor-cached",
            "vendor token, again (cached)",
            await _per_call(lambda i: vendor.verify(token), share),
        ),
        (
            "service-first",
            "service token, first time (ES256)",
            await _per_call(lambda i: service._verify(service_token), share),
        ),
        (
            "dpop",
            "DPoP proof, a new one each call",
            await _per_call(proof, share, len(proofs) - 50),
        ),
    ]


def identity_rows(issuer: DevelopmentIssuer, seconds: float, noop_rpc_seconds: float) -> list[Row]:
    """Each check's time per call beside the server time of one no-op RPC."""
    return [
        Row(
            key=f"identity.{key}",
            name=f"identity: {name}",
            value=spent * 1e6,
            unit="µs",
            ratio=spent / noop_rpc_seconds,
            ratio_of="no-op RPC time",
        )
        for key, name, spent in asyncio.run(_measure(issuer, seconds))
    ]
