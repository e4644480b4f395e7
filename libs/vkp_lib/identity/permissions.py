"""Which RPC needs what: each service declares its `Permissions`, for every RPC of its contract
the scope a vendor's (or an administrator's) token must carry, or `HUB_SERVICE` for the internal
RPCs only the hub's own services may call, or `AnyOf` several. An RPC without an entry is refused
(PERMISSION_DENIED NO_ACCESS_RULE), so a new RPC is closed until someone decides who may call it.
The authenticator (`vkp_lib.identity.authenticator`) enforces them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vkp_lib.auth import Principal, PrincipalKind


class Scopes:
    """The scopes of the hub's RPCs."""

    INGEST = "vkp:ingest"
    LOOKUP = "vkp:lookup"
    ADMIN = "vkp:admin"
    AUDIT_READ = "vkp:audit.read"
    EPJ = "vkp:epj"


@dataclass(frozen=True)
class Scope:
    """A vendor's or administrator's token carrying this scope."""

    name: str

    def allows(self, principal: Principal) -> bool:
        return principal.kind is PrincipalKind.VENDOR and self.name in principal.scopes


@dataclass(frozen=True)
class HubService:
    """One of the hub's own services (a service token), never a vendor."""

    def allows(self, principal: Principal) -> bool:
        return principal.kind is PrincipalKind.SERVICE


HUB_SERVICE = HubService()


@dataclass(frozen=True)
class AnyOf:
    """Any of several requirements."""

    options: tuple[Scope | HubService, ...]

    def allows(self, principal: Principal) -> bool:
        return any(option.allows(principal) for option in self.options)


Requirement = Scope | HubService | AnyOf


@dataclass(frozen=True)
class Permissions:
    """Who may call each RPC of one gRPC service (`vkp.ingest.v1.IngestService`)."""

    service: str
    rules: Mapping[str, Requirement]

    def requirement(self, method: str) -> Requirement | None:
        """The rule of `method` (`/vkp.ingest.v1.IngestService/SubmitEvent`), if it has one."""
        service, _, name = method.lstrip("/").partition("/")
        return self.rules.get(name) if service == self.service else None
