"""Identity and access against a real server: the hub's runner with its token authenticator,
serving a test-only service that echoes the principal it sees. The vendor key set is served over
real HTTP; DPoP replay checks go to the real Redis."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from vkp_lib.auth import current_principal
from vkp_lib.clients import insecure_channel
from vkp_lib.identity.dpop import DpopKey
from vkp_lib.identity.issuer import (
    DEV_ISSUER,
    DevelopmentIssuer,
    ServiceTokenSource,
    load_private_key,
    service_token,
)
from vkp_lib.identity.permissions import HUB_SERVICE, Permissions, Scope, Scopes
from vkp_lib.identity.setup import build_authentication
from vkp_lib.rpc import Context, Handler
from vkp_lib.runner import Server, Service
from vkp_lib.settings import AuthSettings, RuntimeSettings
from vkp_lib.status import error_info
from vkp_lib.testing.plugin import REDIS_URL

ECHO = "vkp.test.v1.EchoService"
BASE_URL = "https://vkp.test.example"
SKEW = 5
ORG = "312229544"
S = wrappers_pb2.StringValue
PERMISSIONS = Permissions(
    ECHO,
    {
        "WhoAmI": Scope(Scopes.INGEST),
        "Internal": HUB_SERVICE,
    },
)
Metadata = tuple[tuple[str, str], ...]


async def who_am_i(request: S, context: Context) -> S:
    p = current_principal()
    return S(
        value=json.dumps(
            {
                "kind": p.kind.value,
                "client_id": p.client_id,
                "org": p.organization_number,
                "scopes": sorted(p.scopes),
                "subject": p.subject,
                "jkt": p.key_thumbprint,
            }
        )
    )


def _register(server: grpc.aio.Server, _: None) -> None:
    handlers: dict[str, Handler] = {
        # "Unmapped" is served but has no access rule.
        name: grpc.unary_unary_rpc_method_handler(
            who_am_i, request_deserializer=S.FromString, response_serializer=S.SerializeToString
        )
        for name in ("WhoAmI", "Internal", "Unmapped")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ECHO, handlers),))


class KeySetServer:
    """The vendor issuer's JWKS over HTTP, counting how often it is fetched."""

    def __init__(self, jwks_file: Path) -> None:
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = jwks_file.read_bytes()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Keeps the key server's access log out of the test output."""

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def key_set_server(dev_issuer: DevelopmentIssuer) -> Iterator[KeySetServer]:
    server = KeySetServer(dev_issuer.jwks_file)
    yield server
    server.close()


@dataclass
class Hub:
    issuer: DevelopmentIssuer
    keys: KeySetServer
    channel: grpc.aio.Channel
    address: str

    async def call(self, method: str, metadata: Metadata) -> dict[str, Any]:
        rpc = self.channel.unary_unary(
            f"/{ECHO}/{method}",
            request_serializer=S.SerializeToString,
            response_deserializer=S.FromString,
        )
        answer: dict[str, Any] = json.loads((await rpc(S(), metadata=metadata, timeout=10)).value)
        return answer


StartHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def start_hub(
    dev_issuer: DevelopmentIssuer, key_set_server: KeySetServer, redis_prefix: str
) -> AsyncIterator[StartHub]:
    servers: list[tuple[Server[None], grpc.aio.Channel]] = []

    async def start(redis_url: str = REDIS_URL, **auth_overrides: Any) -> Hub:
        settings: dict[str, Any] = {
            "issuer": DEV_ISSUER,
            "jwks_url": key_set_server.url,
            "jwks_min_refresh_seconds": 3600,
            "service_jwks_file": dev_issuer.service_jwks_file,
            "public_base_url": BASE_URL,
            "clock_skew_seconds": SKEW,
        }
        auth = AuthSettings(**(settings | auth_overrides))
        runtime = RuntimeSettings(
            development=True,
            shutdown_drain_seconds=0,
            shutdown_grace_seconds=1,
            redis_url=redis_url,
            redis_key_prefix=redis_prefix,
        )
        authentication = build_authentication(PERMISSIONS, auth, runtime)
        service = Service(
            "echo",
            ECHO,
            _register,
            authenticator=authentication.authenticator,
            on_start=authentication.on_start,
            on_close=authentication.on_close,
        )
        server = Server(service, runtime)
        port = server.bind("127.0.0.1", 0)
        await server.start()
        address = f"127.0.0.1:{port}"
        channel = grpc.aio.insecure_channel(address)
        servers.append((server, channel))
        return Hub(dev_issuer, key_set_server, channel, address)

    yield start
    for server, channel in servers:
        await channel.close()
        server.request_shutdown()
        await server.wait()


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def vendor(issuer: DevelopmentIssuer, **kwargs: Any) -> str:
    kwargs.setdefault("organization_number", ORG)
    return issuer.vendor_token("dispenser-cloud", [Scopes.INGEST], **kwargs)


def dpop_call(hub: Hub, key: DpopKey, token: str, method: str = "WhoAmI", **proof: Any) -> Metadata:
    base_url = proof.pop("base_url", BASE_URL)
    proof_method = proof.pop("proof_method", f"/{ECHO}/{method}")
    return (
        ("authorization", f"DPoP {token}"),
        ("dpop", key.proof(base_url, proof_method, token, **proof)),
    )


def _b64(data: dict[str, Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def alg_none(hub: Hub) -> Metadata:
    header = {
        "alg": "none",
        "typ": "at+jwt",
        "kid": ECKey.import_key(json.loads(hub.issuer.issuer_key_file.read_text())).kid,
    }
    claims = json.loads(json.dumps(_claims_of(vendor(hub.issuer))))
    return bearer(f"{_b64(header)}.{_b64(claims)}.")


def _claims_of(token: str) -> dict[str, Any]:
    import base64

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def hs256_with_public_key(hub: Hub) -> Metadata:
    jwks = json.loads(hub.issuer.jwks_file.read_text())
    public = jwks["keys"][0]
    secret = OctKey.import_key(json.dumps(public).encode())
    header = {"alg": "HS256", "typ": "at+jwt", "kid": public["kid"]}
    return bearer(jwt.encode(header, _claims_of(vendor(hub.issuer)), secret, algorithms=["HS256"]))


def foreign_key_token(hub: Hub, *, kid: str) -> Metadata:
    """A well-formed token signed by a key the issuer's key set does not hold."""
    key = ECKey.generate_key("P-256", parameters={"kid": kid})
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    return bearer(jwt.encode(header, _claims_of(vendor(hub.issuer)), key, algorithms=["ES256"]))


def forged_service_token(hub: Hub) -> Metadata:
    """The hub's service claims, signed with the vendor issuer's key instead of the hub's."""
    vendor_key = ECKey.import_key(json.loads(hub.issuer.issuer_key_file.read_text()))
    return bearer(service_token(vendor_key, "ingest"))


NOW = time.time
Case = tuple[str, Callable[[Hub], Metadata], str, str]

REFUSED: list[Case] = [
    ("no token", lambda h: (), "UNAUTHENTICATED", "TOKEN_MISSING"),
    ("garbage", lambda h: bearer("not-a-jwt"), "UNAUTHENTICATED", "TOKEN_INVALID"),
    (
        "basic scheme",
        lambda h: (("authorization", "Basic dXNlcjpwdw=="),),
        "UNAUTHENTICATED",
        "TOKEN_INVALID",
    ),
    ("alg none", alg_none, "UNAUTHENTICATED", "TOKEN_INVALID"),
    ("HS256 signed with the public key", hs256_with_public_key, "UNAUTHENTICATED", "TOKEN_INVALID"),
    (
        "typ of an ID token",
        lambda h: bearer(vendor(h.issuer, header={"typ": "id+jwt"})),
        "UNAUTHENTICATED",
        "TOKEN_INVALID",
    ),
    (
        "wrong issuer",
        lambda h: bearer(vendor(h.issuer, claims={"iss": "https://helseid-sts.example"})),
        "UNAUTHENTICATED",
        "WRONG_ISSUER",
    ),
    (
        "wrong audience",
        lambda h: bearer(vendor(h.issuer, audience="another-api")),
        "UNAUTHENTICATED",
        "WRONG_AUDIENCE",
    ),
    (
        "no audience",
        lambda h: bearer(vendor(h.issuer, audience=None)),
        "UNAUTHENTICATED",
        "WRONG_AUDIENCE",
    ),
    (
        "several audiences",
        lambda h: bearer(vendor(h.issuer, audience=["vkp", "another-api"])),
        "UNAUTHENTICATED",
        "WRONG_AUDIENCE",
    ),
    (
        "expired",
        lambda h: bearer(vendor(h.issuer, now=NOW() - 7200, lifetime_seconds=3600)),
        "UNAUTHENTICATED",
        "TOKEN_EXPIRED",
    ),
    (
        "expired beyond the skew",
        lambda h: bearer(vendor(h.issuer, now=NOW() - 3600 - SKEW - 5, lifetime_seconds=3600)),
        "UNAUTHENTICATED",
        "TOKEN_EXPIRED",
    ),
    (
        "not yet valid",
        lambda h: bearer(vendor(h.issuer, claims={"nbf": int(NOW()) + 600})),
        "UNAUTHENTICATED",
        "TOKEN_NOT_YET_VALID",
    ),
    (
        "valid from beyond the skew",
        lambda h: bearer(vendor(h.issuer, claims={"nbf": int(NOW()) + SKEW + 5})),
        "UNAUTHENTICATED",
        "TOKEN_NOT_YET_VALID",
    ),
    (
        "no expiry",
        lambda h: bearer(vendor(h.issuer, claims={"exp": None})),
        "UNAUTHENTICATED",
        "TOKEN_INVALID",
    ),
    (
        "missing scope",
        lambda h: bearer(h.issuer.vendor_token("dispenser-cloud", [Scopes.LOOKUP, Scopes.ADMIN])),
        "PERMISSION_DENIED",
        "MISSING_SCOPE",
    ),
    (
        "a vendor token with every scope on an internal RPC",
        lambda h: bearer(h.issuer.vendor_token("x", [Scopes.INGEST, Scopes.ADMIN, "vkp:service"])),
        "PERMISSION_DENIED",
        "SERVICE_IDENTITY_REQUIRED",
    ),
    (
        "a service token on a vendor RPC",
        lambda h: bearer(h.issuer.service_token("ingest")),
        "PERMISSION_DENIED",
        "MISSING_SCOPE",
    ),
    (
        "the hub's claims signed with another key",
        forged_service_token,
        "UNAUTHENTICATED",
        "UNKNOWN_SIGNING_KEY",
    ),
    (
        "a bound token without a proof",
        lambda h: (("authorization", f"DPoP {vendor(h.issuer, jkt=DpopKey.generate().jkt)}"),),
        "UNAUTHENTICATED",
        "DPOP_PROOF_MISSING",
    ),
    (
        "a bound token sent as Bearer",
        lambda h: bearer(vendor(h.issuer, jkt=DpopKey.generate().jkt)),
        "UNAUTHENTICATED",
        "DPOP_PROOF_REQUIRED",
    ),
    (
        "a DPoP call with an unbound token",
        lambda h: dpop_call(h, DpopKey.generate(), vendor(h.issuer)),
        "UNAUTHENTICATED",
        "TOKEN_NOT_BOUND",
    ),
]

# The method each refused case calls: the internal one for the cases about service identity.
METHOD_OF = {
    "a vendor token with every scope on an internal RPC": "Internal",
    "the hub's claims signed with another key": "Internal",
}


@pytest.mark.parametrize(
    ("name", "credentials", "code", "reason"), REFUSED, ids=[c[0] for c in REFUSED]
)
async def test_a_call_is_refused(
    start_hub: StartHub,
    name: str,
    credentials: Callable[[Hub], Metadata],
    code: str,
    reason: str,
) -> None:
    hub = await start_hub()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.call(METHOD_OF.get(name, "WhoAmI"), credentials(hub))
    info = error_info(caught.value)
    assert info is not None
    assert (caught.value.code().name, info.reason) == (code, reason)
    assert info.domain == "echo.vkp"


def bound(hub: Hub) -> tuple[DpopKey, str]:
    key = DpopKey.generate()
    return key, vendor(hub.issuer, jkt=key.jkt)


PROOF_REFUSED: list[tuple[str, Callable[[Hub, DpopKey, str], Metadata]]] = [
    ("for another method", lambda h, k, t: dpop_call(h, k, t, proof_method=f"/{ECHO}/Internal")),
    ("for another URL", lambda h, k, t: dpop_call(h, k, t, base_url="https://attacker.example")),
    ("for another HTTP method", lambda h, k, t: dpop_call(h, k, t, claims={"htm": "GET"})),
    ("for another token", lambda h, k, t: dpop_call(h, k, t, claims={"ath": "x" * 43})),
    ("signed by another key", lambda h, k, t: dpop_call(h, DpopKey.generate(), t)),
    ("too old", lambda h, k, t: dpop_call(h, k, t, now=NOW() - 3600)),
    ("from the future", lambda h, k, t: dpop_call(h, k, t, now=NOW() + 3600)),
    ("of the wrong type", lambda h, k, t: (("authorization", f"DPoP {t}"), ("dpop", t))),
]


@pytest.mark.parametrize(("name", "credentials"), PROOF_REFUSED, ids=[c[0] for c in PROOF_REFUSED])
async def test_a_bound_token_with_a_wrong_proof_is_refused(
    start_hub: StartHub, name: str, credentials: Callable[[Hub, DpopKey, str], Metadata]
) -> None:
    hub = await start_hub()
    key, token = bound(hub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.call("WhoAmI", credentials(hub, key, token))
    info = error_info(caught.value)
    assert info is not None
    assert (caught.value.code(), info.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "DPOP_PROOF_INVALID",
    )


async def test_a_good_plain_token_is_accepted_and_its_claims_reach_the_servicer(
    start_hub: StartHub,
) -> None:
    hub = await start_hub()
    seen = await hub.call("WhoAmI", bearer(vendor(hub.issuer)))
    assert seen == {
        "kind": "vendor",
        "client_id": "dispenser-cloud",
        "org": ORG,
        "scopes": [Scopes.INGEST],
        "subject": "dispenser-cloud",
        "jkt": "",
    }


async def test_tokens_within_the_clock_skew_are_accepted(start_hub: StartHub) -> None:
    hub = await start_hub()
    just_expired = vendor(hub.issuer, now=NOW() - 3600 - SKEW + 3, lifetime_seconds=3600)
    almost_valid = vendor(hub.issuer, claims={"nbf": int(NOW()) + SKEW - 3})
    for token in (just_expired, almost_valid):
        assert (await hub.call("WhoAmI", bearer(token)))["kind"] == "vendor"


async def test_a_token_accepted_before_is_refused_once_it_has_expired(
    start_hub: StartHub,
) -> None:
    hub = await start_hub()
    expires = int(NOW()) - SKEW + 2  # within the skew for one to two seconds more
    token = bearer(vendor(hub.issuer, claims={"exp": expires}))
    for _ in range(2):
        assert (await hub.call("WhoAmI", token))["kind"] == "vendor"
    await asyncio.sleep(expires + SKEW + 0.2 - NOW())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.call("WhoAmI", token)
    info = error_info(caught.value)
    assert info is not None
    assert (caught.value.code(), info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")


async def test_a_token_accepted_before_is_still_held_to_each_methods_rule(
    start_hub: StartHub,
) -> None:
    hub = await start_hub()
    token = bearer(vendor(hub.issuer))
    assert (await hub.call("WhoAmI", token))["kind"] == "vendor"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.call("Internal", token)
    info = error_info(caught.value)
    assert info is not None
    assert (caught.value.code(), info.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SERVICE_IDENTITY_REQUIRED",
    )
    assert (await hub.call("WhoAmI", token))["kind"] == "vendor"


async def test_a_good_bound_token_with_its_proof_is_accepted(start_hub: StartHub) -> None:
    hub = await start_hub()
    key, token = bound(hub)
    seen = await hub.call("WhoAmI", dpop_call(hub, key, token))
    assert (seen["client_id"], seen["jkt"]) == ("dispenser-cloud", key.jkt)
    # A fresh proof for each call.
    assert (await hub.call("WhoAmI", dpop_call(hub, key, token)))["jkt"] == key.jkt


async def test_a_replayed_proof_is_refused(start_hub: StartHub) -> None:
    hub = await start_hub()
    key, token = bound(hub)
    metadata = dpop_call(hub, key, token)
    await hub.call("WhoAmI", metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.call("WhoAmI", metadata)
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "DPOP_PROOF_REPLAYED"


async def test_a_proof_used_at_one_replica_is_refused_at_another(start_hub: StartHub) -> None:
    first, second = await start_hub(), await start_hub()
    key, token = bound(first)
    metadata = dpop_call(first, key, token)
    await first.call("WhoAmI", metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await second.call("WhoAmI", metadata)
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "DPOP_PROOF_REPLAYED"


async def test_when_binding_is_required_a_plain_token_is_refused_and_a_bound_one_accepted(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(dpop_required=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.call("WhoAmI", bearer(vendor(hub.issuer)))
    info = error_info(caught.value)
    assert info is not None
    assert (caught.value.code(), info.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "DPOP_REQUIRED",
    )
    key, token = bound(hub)
    assert (await hub.call("WhoAmI", dpop_call(hub, key, token)))["jkt"] == key.jkt


async def test_a_service_token_is_accepted_on_an_internal_rpc(start_hub: StartHub) -> None:
    hub = await start_hub()
    seen = await hub.call("Internal", bearer(hub.issuer.service_token("lookup")))
    assert (seen["kind"], seen["subject"], seen["client_id"]) == ("service", "lookup", "vkp-lookup")


async def test_an_rpc_missing_from_the_access_map_is_refused(start_hub: StartHub) -> None:
    hub = await start_hub()
    for credentials in (bearer(vendor(hub.issuer)), bearer(hub.issuer.service_token("ingest"))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await hub.call("Unmapped", credentials)
        info = error_info(caught.value)
        assert info is not None
        assert (caught.value.code(), info.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "NO_ACCESS_RULE",
        )


async def test_an_unknown_key_id_refreshes_the_key_set_once_per_interval(
    start_hub: StartHub,
) -> None:
    hub = await start_hub()
    await hub.call("WhoAmI", bearer(vendor(hub.issuer)))
    fetched = hub.keys.fetches
    for kid in ("rotated-1", "rotated-2", "rotated-3"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await hub.call("WhoAmI", foreign_key_token(hub, kid=kid))
        info = error_info(caught.value)
        assert info is not None
        assert (caught.value.code(), info.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "UNKNOWN_SIGNING_KEY",
        )
    assert hub.keys.fetches == fetched + 1


async def test_a_key_added_to_the_issuer_is_found_by_the_refresh(
    start_hub: StartHub, tmp_path: Path
) -> None:
    issuer = DevelopmentIssuer.open(tmp_path / "rotating")
    keys = KeySetServer(issuer.jwks_file)
    try:
        hub = await start_hub(jwks_url=keys.url)
        hub.issuer = issuer
        await hub.call("WhoAmI", bearer(vendor(issuer)))
        # The issuer rotates: a new key joins the set.
        new = ECKey.generate_key("P-256", parameters={"kid": "vkp-dev-rotated"})
        jwks = json.loads(issuer.jwks_file.read_text())
        jwks["keys"].append(new.as_dict(private=False))
        issuer.jwks_file.write_text(json.dumps(jwks))
        claims = _claims_of(vendor(issuer))
        token = jwt.encode(
            {"alg": "ES256", "typ": "at+jwt", "kid": new.kid}, claims, new, algorithms=["ES256"]
        )
        assert (await hub.call("WhoAmI", bearer(token)))["kind"] == "vendor"
        assert keys.fetches == 2
    finally:
        keys.close()


async def test_a_hub_client_channel_signs_its_calls_with_the_service_key(
    start_hub: StartHub, dev_issuer: DevelopmentIssuer
) -> None:
    hub = await start_hub()
    tokens = ServiceTokenSource(load_private_key(dev_issuer.service_key_file), "journaling")
    async with insecure_channel(hub.address, "vkp.registry.v1.RegistryService", tokens) as channel:
        rpc = channel.unary_unary(
            f"/{ECHO}/Internal",
            request_serializer=S.SerializeToString,
            response_deserializer=S.FromString,
        )
        seen = json.loads((await rpc(S(), timeout=10)).value)
    assert (seen["kind"], seen["subject"]) == ("service", "journaling")


async def test_dpop_calls_are_unavailable_while_the_replay_check_cannot_reach_redis(
    start_hub: StartHub,
) -> None:
    hub = await start_hub()
    key, token = bound(hub)
    # A Redis nobody listens on: the proof cannot be checked for replay, so it is not accepted.
    closed = await start_hub(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await closed.call("WhoAmI", dpop_call(closed, key, token))
    info = error_info(caught.value)
    assert info is not None
    assert (caught.value.code(), info.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "REPLAY_CHECK_UNAVAILABLE",
    )
    # A plain bearer token needs no replay check.
    assert (await closed.call("WhoAmI", bearer(vendor(hub.issuer))))["kind"] == "vendor"
