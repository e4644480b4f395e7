"""Who is calling: the authentication hook of the runner and the principal servicers read.

The runner's auth interceptor asks an `Authenticator` for the principal of every call (health
and reflection excepted) and puts it in a context variable for the servicer. The services use
`vkp_lib.identity.authenticator.TokenAuthenticator` (vendor tokens, DPoP, the hub's own service
identity); a `Service` given no authenticator refuses every call.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from vkp_lib.errors import PermissionDenied


class PrincipalKind(enum.Enum):
    ANONYMOUS = "anonymous"
    VENDOR = "vendor"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as their token proves it."""

    kind: PrincipalKind
    #: The OAuth2 client id (a vendor system's, or `vkp-<service>` for a hub service).
    client_id: str = ""
    #: The organisation number of the caller's organisation, when the token carries it.
    organization_number: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)
    #: The token's subject (for a hub service: its name, e.g. ingest).
    subject: str = ""
    #: The thumbprint of the key a DPoP-bound token is bound to; empty for a bearer token.
    key_thumbprint: str = ""


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "vkp_principal", default=ANONYMOUS
)


def current_principal() -> Principal:
    """The principal of the call being served."""
    return _current.get()


def set_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


class Authenticator(Protocol):
    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        """The principal of a call to `method` (`/pkg.Service/Method`), or raise Unauthenticated
        / PermissionDenied."""
        ...


class AnonymousAuthenticator:
    """Lets every call through as anonymous: for benchmarks and tests of the runner only."""

    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        return ANONYMOUS


class DenyAllAuthenticator:
    """Refuses every call: what a service runs with until it is given an authenticator."""

    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        raise PermissionDenied("NO_AUTHENTICATOR", "this service accepts no calls")
