"""Who is calling: the authentication hook of the runner and the principal servicers read.

The runner's auth interceptor asks an `Authenticator` for the principal of every call (health
and reflection excepted) and puts it in a context variable for the servicer. The identity step
fills this in with vendor tokens, DPoP and the hub's own service identity; until then services
run with `AnonymousAuthenticator`.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class PrincipalKind(enum.Enum):
    ANONYMOUS = "anonymous"
    VENDOR = "vendor"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    client_id: str = ""
    organization_number: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)


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
    """Lets every call through as anonymous; replaced by token checks in the identity step."""

    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        return ANONYMOUS
