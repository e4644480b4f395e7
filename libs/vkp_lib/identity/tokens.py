"""JWT access tokens, verified.

One `TokenVerifier` per kind of token the hub accepts: vendors' access tokens (HelseID style,
RFC 9068) from the configured issuer, and the hub's own service tokens from the hub's issuer.
Each checks, in order: the form, an asymmetric algorithm from the allow-list here (never the
token's own choice), the `typ`, the signing key by `kid` (one rate-limited refresh of the key
set for an unknown one), the signature, the exact issuer, exactly one audience and it ours, and
`exp`/`nbf`/`iat` within the clock skew. Each failure is `Unauthenticated` with its own reason.

A verified token is remembered (by its hash, until it expires) so a vendor's next call with the
same token costs a dictionary lookup, not a signature check.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import errors, jws, jwt

from vkp_lib.errors import Unauthenticated
from vkp_lib.identity.keys import KeySource, KeySourceError

#: Signature algorithms the hub accepts: asymmetric only. A token naming any other (none, HS256
#: signed with a public key, ...) is refused before any key is looked at.
ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
#: `typ` values of an access token (RFC 9068, and plain JWT), compared case-insensitively.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt", "jwt"})
#: A token longer than this is not parsed.
MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose signature, issuer, audience and times have been checked."""

    raw: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    @property
    def expires_at(self) -> float:
        return float(self.claims["exp"])


def unverified_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, without checking anything."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated("TOKEN_INVALID", "the token is too long")
    try:
        header: dict[str, Any] = dict(jws.extract_compact(token.encode()).protected)
    except (errors.JoseError, ValueError, UnicodeError):
        raise Unauthenticated("TOKEN_INVALID", "the token is not a signed JWT") from None
    return header


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a compact JWS, without checking anything (to choose a verifier only)."""
    try:
        parsed = json.loads(jws.extract_compact(token.encode()).payload)
    except (errors.JoseError, ValueError, UnicodeError):
        raise Unauthenticated("TOKEN_INVALID", "the token is not a signed JWT") from None
    return parsed if isinstance(parsed, dict) else {}


def _time_error(exc: errors.JoseError) -> Unauthenticated:
    if isinstance(exc, errors.ExpiredTokenError):
        return Unauthenticated("TOKEN_EXPIRED", "the token has expired")
    claim = getattr(exc, "claim", "")
    if isinstance(exc, errors.InvalidClaimError) and claim in ("nbf", "iat"):
        return Unauthenticated("TOKEN_NOT_YET_VALID", "the token is not valid yet")
    if isinstance(exc, errors.MissingClaimError):
        return Unauthenticated("TOKEN_INVALID", f"the token has no {claim or 'required'} claim")
    return Unauthenticated("TOKEN_INVALID", f"the token's {claim or 'time'} claim is not valid")


class TokenVerifier:
    """Verifies the JWT access tokens of one issuer for one audience."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        skew_seconds: float = 5.0,
        token_types: Collection[str] = ACCESS_TOKEN_TYPES,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self._skew = skew_seconds
        self._types = frozenset(t.lower() for t in token_types)
        self._clock = clock
        self._cache: OrderedDict[bytes, VerifiedToken] = OrderedDict()
        self._cache_size = cache_size

    def still_valid(self, verified: VerifiedToken) -> bool:
        """Whether a token this verifier verified has not expired since (within the skew)."""
        return self._clock() <= verified.expires_at + self._skew

    def cached(self, token: str) -> VerifiedToken | None:
        """The token, if this verifier verified it before and it has not expired since."""
        known = self._cache.get(hashlib.sha256(token.encode()).digest())
        if known is not None and self._clock() <= known.expires_at + self._skew:
            return known
        return None

    async def verify(self, token: str) -> VerifiedToken:
        digest = hashlib.sha256(token.encode()).digest()
        known = self._cache.get(digest)
        if known is not None:
            if self._clock() <= known.expires_at + self._skew:
                return known
            del self._cache[digest]
            raise Unauthenticated("TOKEN_EXPIRED", "the token has expired")
        verified = await self._verify(token)
        self._cache[digest] = verified
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return verified

    async def _verify(self, token: str) -> VerifiedToken:
        header = unverified_header(token)
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthenticated("TOKEN_INVALID", "the token's algorithm is not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in self._types:
            raise Unauthenticated("TOKEN_INVALID", "the token's type (typ) is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("TOKEN_INVALID", "the token names no signing key (kid)")
        try:
            key = await self.keys.get(kid)
        except KeySourceError:
            raise Unauthenticated(
                "SIGNING_KEYS_UNAVAILABLE", "the issuer's signing keys could not be read"
            ) from None
        if key is None:
            raise Unauthenticated("UNKNOWN_SIGNING_KEY", "the token's signing key is not known")
        try:
            decoded = jwt.decode(token, key, algorithms=ALLOWED_ALGORITHMS)
        except (errors.JoseError, ValueError):
            raise Unauthenticated("TOKEN_INVALID", "the token's signature is not valid") from None
        claims = decoded.claims
        if claims.get("iss") != self.issuer:
            raise Unauthenticated("WRONG_ISSUER", "the token is not from the expected issuer")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if audiences != [self.audience]:
            raise Unauthenticated(
                "WRONG_AUDIENCE", "the token must have exactly one audience, this service's"
            )
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()), leeway=int(self._skew), exp={"essential": True}
        )
        try:
            registry.validate(claims)
        except errors.JoseError as exc:
            raise _time_error(exc) from None
        return VerifiedToken(raw=token, header=decoded.header, claims=claims)
