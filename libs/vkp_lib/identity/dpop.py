"""DPoP: sender-constrained access tokens (RFC 9449), as Norsk helsenett's JFT requires.

A bound token carries the thumbprint of the client's key (`cnf.jkt`); the client sends it as
`authorization: DPoP <token>` with a fresh proof in the `dpop` metadata: a JWT signed by that
key, with the key in its header, naming the call (`htm` POST, `htu` the hub's public base URL
plus `/<package>.<Service>/<Method>`, since a gRPC server never sees the URL the client used),
when (`iat`), a unique id (`jti`) and the hash of the token (`ath`). A stolen token is useless
without the key, and a stolen proof is useless twice: each `jti` is accepted once within the
window, across replicas when the replay cache is Redis.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from joserfc import errors, jwk, jwt
from joserfc.jwk import ECKey
from redis.asyncio import Redis
from redis.exceptions import RedisError

from vkp_lib.errors import Unauthenticated, Unavailable
from vkp_lib.identity.tokens import ALLOWED_ALGORITHMS, MAX_TOKEN_CHARS, unverified_header

PROOF_TYPE = "dpop+jwt"
HTTP_METHOD = "POST"  # gRPC calls are HTTP/2 POSTs


def token_hash(access_token: str) -> str:
    """`ath`: base64url of the SHA-256 of the access token, without padding."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def target_uri(base_url: str, method: str) -> str:
    """`htu` of a gRPC method (`/pkg.Service/Method`) behind the public base URL."""
    return base_url.rstrip("/") + method


class ReplayCache(Protocol):
    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        """True the first time `key` is seen within `ttl_seconds`, False after."""
        ...


class MemoryReplayCache:
    """Seen proof ids of one process (a single replica, and tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: dict[str, float] = {}
        self._clock = clock

    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        now = self._clock()
        if len(self._seen) > 10_000:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
        if self._seen.get(key, 0.0) > now:
            return False
        self._seen[key] = now + ttl_seconds
        return True


class RedisReplayCache:
    """Seen proof ids shared by every replica: `SET key 1 NX PX ttl`."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        try:
            stored = await self._redis.set(
                f"{self._prefix}dpop-jti:{key}", b"1", nx=True, px=max(1, int(ttl_seconds * 1000))
            )
        except RedisError:
            raise Unavailable(
                "REPLAY_CHECK_UNAVAILABLE", "DPoP proofs cannot be checked for replay now"
            ) from None
        return bool(stored)


def _invalid(message: str) -> Unauthenticated:
    return Unauthenticated("DPOP_PROOF_INVALID", message)


class DpopVerifier:
    """Checks the DPoP proof of a call against its bound access token."""

    def __init__(
        self,
        *,
        base_url: str,
        window_seconds: float,
        replay: ReplayCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base_url = base_url
        self._window = window_seconds
        self._replay = replay
        self._clock = clock

    async def verify(self, proof: str, *, access_token: str, jkt: str, method: str) -> None:
        """Raises `Unauthenticated` unless `proof` proves possession of the key `jkt` for a call
        of `method` with `access_token`, and has not been used before."""
        if len(proof) > MAX_TOKEN_CHARS:
            raise _invalid("the DPoP proof is too long")
        try:
            header = unverified_header(proof)
        except Unauthenticated:
            raise _invalid("the DPoP proof is not a signed JWT") from None
        if header.get("typ") != PROOF_TYPE:
            raise _invalid("the DPoP proof's typ must be dpop+jwt")
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise _invalid("the DPoP proof's algorithm is not allowed")
        public = header.get("jwk")
        if not isinstance(public, dict) or "d" in public:
            raise _invalid("the DPoP proof must carry its public key (jwk)")
        try:
            key = jwk.import_key(public)
            claims = jwt.decode(proof, key, algorithms=ALLOWED_ALGORITHMS).claims
            thumbprint = jwk.thumbprint(public)
        except (errors.JoseError, ValueError, TypeError):
            raise _invalid("the DPoP proof's signature is not valid") from None
        if thumbprint != jkt:
            raise _invalid("the DPoP proof is not signed by the key the token is bound to")
        if claims.get("htm") != HTTP_METHOD:
            raise _invalid("the DPoP proof is for another HTTP method (htm)")
        if claims.get("htu") != target_uri(self._base_url, method):
            raise _invalid("the DPoP proof is for another method or URL (htu)")
        issued = claims.get("iat")
        if not isinstance(issued, int | float) or abs(self._clock() - issued) > self._window:
            raise _invalid("the DPoP proof is too old or from the future (iat)")
        if claims.get("ath") != token_hash(access_token):
            raise _invalid("the DPoP proof is for another access token (ath)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise _invalid("the DPoP proof has no id (jti)")
        replay_key = hashlib.sha256(f"{jkt}\n{jti}".encode()).hexdigest()
        if not await self._replay.first_use(replay_key, 2 * self._window):
            raise Unauthenticated("DPOP_PROOF_REPLAYED", "the DPoP proof has been used before")


class DpopKey:
    """A client's DPoP key: binds tokens (`jkt`) and signs proofs. For tests, the command line,
    and as a reference for vendors."""

    def __init__(self, key: ECKey) -> None:
        self.key = key

    @classmethod
    def generate(cls) -> DpopKey:
        return cls(ECKey.generate_key("P-256"))

    @property
    def public_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))

    @property
    def jkt(self) -> str:
        return jwk.thumbprint(self.public_jwk)

    def proof(
        self,
        base_url: str,
        method: str,
        access_token: str,
        *,
        now: float | None = None,
        jti: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A proof for one call of `method`; `claims` overrides any claim (for tests)."""
        body: dict[str, Any] = {
            "htm": HTTP_METHOD,
            "htu": target_uri(base_url, method),
            "iat": int(time.time() if now is None else now),
            "jti": jti or uuid.uuid4().hex,
            "ath": token_hash(access_token),
        }
        body.update(claims or {})
        header = {"typ": PROOF_TYPE, "alg": "ES256", "jwk": self.public_jwk}
        return jwt.encode(header, body, self.key, algorithms=["ES256"])
