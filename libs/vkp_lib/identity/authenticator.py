"""The authenticator: who is calling, and may they call this RPC (the service's `Permissions`).

`TokenAuthenticator` is what the runner's auth interceptor calls for every RPC: the rule, then
the token (`authorization: Bearer …`, or `DPoP …` with its proof in `dpop`), then the rule
against the principal the token proves.

Reasons: UNAUTHENTICATED — TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_NOT_YET_VALID,
WRONG_ISSUER, WRONG_AUDIENCE, UNKNOWN_SIGNING_KEY, SIGNING_KEYS_UNAVAILABLE, DPOP_REQUIRED,
DPOP_PROOF_REQUIRED (a bound token sent as Bearer), DPOP_PROOF_MISSING, DPOP_PROOF_INVALID,
DPOP_PROOF_REPLAYED, TOKEN_NOT_BOUND (a DPoP scheme with an unbound token); PERMISSION_DENIED —
MISSING_SCOPE, SERVICE_IDENTITY_REQUIRED, NO_ACCESS_RULE; UNAVAILABLE — REPLAY_CHECK_UNAVAILABLE.

A caller sends the same token on every call until it expires, so the principal a Bearer token
proved is kept (by the `authorization` value itself, until the token expires): the next call
with it costs a dictionary lookup and the method's rule. A DPoP call proves its key every time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from vkp_lib.auth import Principal, PrincipalKind
from vkp_lib.errors import PermissionDenied, StartupError, Unauthenticated
from vkp_lib.identity.dpop import DpopVerifier
from vkp_lib.identity.issuer import ORGANIZATION_CLAIM
from vkp_lib.identity.keys import KeySourceError
from vkp_lib.identity.permissions import AnyOf, Permissions, Requirement, Scope
from vkp_lib.identity.tokens import TokenVerifier, VerifiedToken, unverified_claims


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope", claims.get("scp", ""))
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list):
        return frozenset(s for s in scope if isinstance(s, str))
    return frozenset()


def _claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name, "")
    return value if isinstance(value, str) else ""


def _bound_key(claims: Mapping[str, Any]) -> str:
    confirmation = claims.get("cnf")
    if isinstance(confirmation, dict) and isinstance(confirmation.get("jkt"), str):
        return str(confirmation["jkt"])
    return ""


class _Known(NamedTuple):
    """A Bearer token's principal, and what says whether the token still holds."""

    principal: Principal
    token: VerifiedToken
    verifier: TokenVerifier


class TokenAuthenticator:
    """Authenticates every call against the service's permissions."""

    def __init__(
        self,
        permissions: Permissions,
        *,
        vendor: TokenVerifier,
        service: TokenVerifier,
        dpop: DpopVerifier,
        dpop_required: bool = False,
        organization_claim: str = ORGANIZATION_CLAIM,
        cache_size: int = 10_000,
    ) -> None:
        self.permissions = permissions
        self.vendor = vendor
        self.service = service
        self._dpop = dpop
        self._dpop_required = dpop_required
        self._organization_claim = organization_claim
        #: The principals of Bearer tokens verified before, by their `authorization` value.
        self._bearers: dict[str, _Known] = {}
        self._cache_size = cache_size
        self._requirements: dict[str, Requirement | None] = {}

    async def load(self) -> None:
        """Reads the key sets now, so a wrong location stops the service at start."""
        for keys in (self.vendor.keys, self.service.keys):
            try:
                await keys.load()
            except KeySourceError as exc:
                raise StartupError(str(exc)) from exc

    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        try:
            requirement = self._requirements[method]
        except KeyError:
            requirement = self._requirements[method] = self.permissions.requirement(method)
        if requirement is None:
            raise PermissionDenied("NO_ACCESS_RULE", "this method has no access rule")
        authorization = metadata.get("authorization", "")
        known = self._bearers.get(authorization)
        if known is not None and known.verifier.still_valid(known.token):
            principal = known.principal
        else:
            if known is not None:  # expired: verified again below, which says so
                del self._bearers[authorization]
            principal = await self._principal(method, metadata)
        if not requirement.allows(principal):
            raise self._denial(requirement, principal)
        return principal

    def _remember(self, authorization: str, known: _Known) -> None:
        self._bearers[authorization] = known
        if len(self._bearers) > self._cache_size:
            del self._bearers[next(iter(self._bearers))]  # the oldest

    @staticmethod
    def _denial(requirement: Requirement, principal: Principal) -> PermissionDenied:
        options = requirement.options if isinstance(requirement, AnyOf) else (requirement,)
        scopes = [option.name for option in options if isinstance(option, Scope)]
        if not scopes:
            return PermissionDenied(
                "SERVICE_IDENTITY_REQUIRED", "only the hub's own services may call this method"
            )
        return PermissionDenied(
            "MISSING_SCOPE",
            "the token lacks the scope this method needs",
            metadata={"required_scopes": " ".join(scopes)},
        )

    async def _principal(self, method: str, metadata: Mapping[str, str]) -> Principal:
        authorization = metadata.get("authorization", "")
        if not authorization:
            raise Unauthenticated("TOKEN_MISSING", "the call carries no access token")
        scheme, _, token = authorization.strip().partition(" ")
        scheme, token = scheme.lower(), token.strip()
        if scheme not in ("bearer", "dpop") or not token:
            raise Unauthenticated("TOKEN_INVALID", "authorization must be Bearer or DPoP <token>")
        # Which issuer's verifier: known tokens by the caches (cheap), others by their claim.
        is_service = self.service.cached(token) is not None or (
            self.vendor.cached(token) is None
            and unverified_claims(token).get("iss") == self.service.issuer
        )
        if is_service:
            if scheme != "bearer":
                raise Unauthenticated("TOKEN_INVALID", "service tokens are sent as Bearer")
            verified = await self.service.verify(token)
            principal = Principal(
                PrincipalKind.SERVICE,
                client_id=_claim(verified.claims, "client_id"),
                subject=_claim(verified.claims, "sub"),
            )
            self._remember(authorization, _Known(principal, verified, self.service))
            return principal
        verified = await self.vendor.verify(token)
        jkt = await self._check_binding(scheme, verified, method, metadata)
        client_id = _claim(verified.claims, "client_id")
        if not client_id:
            raise Unauthenticated("TOKEN_INVALID", "the token has no client_id claim")
        principal = Principal(
            PrincipalKind.VENDOR,
            client_id=client_id,
            organization_number=_claim(verified.claims, self._organization_claim),
            scopes=_scopes(verified.claims),
            subject=_claim(verified.claims, "sub"),
            key_thumbprint=jkt,
        )
        if scheme == "bearer":  # a DPoP call proves its key every time
            self._remember(authorization, _Known(principal, verified, self.vendor))
        return principal

    async def _check_binding(
        self, scheme: str, verified: VerifiedToken, method: str, metadata: Mapping[str, str]
    ) -> str:
        jkt = _bound_key(verified.claims)
        if scheme == "bearer":
            if jkt:
                raise Unauthenticated(
                    "DPOP_PROOF_REQUIRED", "a DPoP-bound token must be sent as DPoP with a proof"
                )
            if self._dpop_required:
                raise Unauthenticated("DPOP_REQUIRED", "this deployment requires DPoP-bound tokens")
            return ""
        if not jkt:
            raise Unauthenticated("TOKEN_NOT_BOUND", "a DPoP call needs a DPoP-bound token")
        proof = metadata.get("dpop", "")
        if not proof:
            raise Unauthenticated("DPOP_PROOF_MISSING", "the call carries no DPoP proof")
        await self._dpop.verify(proof, access_token=verified.raw, jkt=jkt, method=method)
        return jkt
