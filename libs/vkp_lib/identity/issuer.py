"""Tokens the hub signs: its services' own identity, and the development issuer.

**Service tokens.** A hub service calls another with a short-lived JWT signed by the hub's
service key (a private JWK each service is given by configuration), issuer and audience the
hub's own, `typ` `vkp-service+jwt`. They are verified against the hub's service key set only,
so no vendor token, whatever its scopes or issuer, can pass as one.

**The development issuer** (`vkp token issue`) stands in for HelseID on a developer's machine
and in tests: on first use it makes two key pairs in its folder — one that signs vendor and
administrator tokens (`issuer-key.json`, public `jwks.json`), one that is the hub's service key
(`service-key.json`, public `service-jwks.json`). Its key ids start with `vkp-dev-` and its
issuer is `urn:vkp:dev-issuer`: a service refuses to start with either unless development mode
is on.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

DEV_ISSUER = "urn:vkp:dev-issuer"
DEV_KID_PREFIX = "vkp-dev-"
DEFAULT_AUDIENCE = "vkp"
SERVICE_ISSUER = "urn:vkp:hub"
SERVICE_AUDIENCE = "urn:vkp:hub:services"
SERVICE_TOKEN_TYPE = "vkp-service+jwt"  # noqa: S105 - a JWT typ, not a secret
#: The claim of HelseID access tokens that carries the client's organisation number.
ORGANIZATION_CLAIM = "helseid://claims/client/claims/orgnr_parent"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def load_private_key(path: Path) -> ECKey:
    """A private signing key from a JWK file."""
    key = ECKey.import_key(json.loads(path.read_text()))
    if not key.is_private:
        raise ValueError(f"{path} holds no private key")
    return key


def key_ids(jwks_file: Path) -> list[str]:
    """The key ids of a JWKS file."""
    data = json.loads(jwks_file.read_text())
    return [str(k.get("kid", "")) for k in data.get("keys", [])]


class ServiceTokenSource:
    """Signs this service's own tokens, and reuses one until a minute before it expires."""

    def __init__(
        self,
        key: ECKey,
        service: str,
        *,
        issuer: str = SERVICE_ISSUER,
        audience: str = SERVICE_AUDIENCE,
        lifetime_seconds: int = 300,
    ) -> None:
        self._key = key
        self.service = service
        self._issuer, self._audience = issuer, audience
        self._lifetime = lifetime_seconds
        self._token, self._renew_at = "", 0.0

    def token(self) -> str:
        now = time.time()
        if now >= self._renew_at:
            self._token = service_token(
                self._key,
                self.service,
                issuer=self._issuer,
                audience=self._audience,
                lifetime_seconds=self._lifetime,
                now=now,
            )
            self._renew_at = now + max(1, self._lifetime - 60)
        return self._token


def service_token(
    key: ECKey,
    service: str,
    *,
    issuer: str = SERVICE_ISSUER,
    audience: str = SERVICE_AUDIENCE,
    lifetime_seconds: int = 300,
    now: float | None = None,
) -> str:
    """A token naming the hub service `service` (registry, ingest, ...)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": service,
        "client_id": f"vkp-{service}",
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime_seconds,
        "jti": uuid.uuid4().hex,
    }
    header = {"typ": SERVICE_TOKEN_TYPE, "alg": "ES256", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


@dataclass(frozen=True)
class DevelopmentIssuer:
    """The development issuer's folder of keys, and the tokens it signs."""

    directory: Path

    @property
    def issuer_key_file(self) -> Path:
        return self.directory / "issuer-key.json"

    @property
    def jwks_file(self) -> Path:
        return self.directory / "jwks.json"

    @property
    def service_key_file(self) -> Path:
        return self.directory / "service-key.json"

    @property
    def service_jwks_file(self) -> Path:
        return self.directory / "service-jwks.json"

    @classmethod
    def open(cls, directory: Path) -> DevelopmentIssuer:
        """The issuer in `directory`, making its keys on first use."""
        issuer = cls(directory)
        for private, public, name in (
            (issuer.issuer_key_file, issuer.jwks_file, "issuer"),
            (issuer.service_key_file, issuer.service_jwks_file, "service"),
        ):
            if not private.exists():
                key = ECKey.generate_key("P-256", auto_kid=True)
                kid = f"{DEV_KID_PREFIX}{name}-{key.thumbprint()[:12]}"
                key = ECKey.import_key(key.as_dict(private=True) | {"kid": kid})
                _write_private(private, json.dumps(key.as_dict(private=True)))
                keys = KeySet([key]).as_dict(private=False)
                public.write_text(json.dumps(keys, indent=2) + "\n")
        return issuer

    def env(self, *, audience: str = DEFAULT_AUDIENCE) -> dict[str, str]:
        """The settings of a service that trusts this issuer (with VKP_DEVELOPMENT=true)."""
        return {
            "VKP_DEVELOPMENT": "true",
            "VKP_AUTH_ISSUER": DEV_ISSUER,
            "VKP_AUTH_AUDIENCE": audience,
            "VKP_AUTH_JWKS_FILE": str(self.jwks_file),
            "VKP_AUTH_SERVICE_JWKS_FILE": str(self.service_jwks_file),
            "VKP_AUTH_SERVICE_KEY_FILE": str(self.service_key_file),
        }

    def vendor_token(
        self,
        client_id: str,
        scopes: Iterable[str],
        *,
        organization_number: str = "",
        audience: str | list[str] | None = DEFAULT_AUDIENCE,
        lifetime_seconds: int = 3600,
        jkt: str = "",
        now: float | None = None,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """An access token as HelseID would issue it to a vendor system (or an administrator).
        `claims` and `header` override any value (tests use them to forge)."""
        issued = int(time.time() if now is None else now)
        body: dict[str, Any] = {
            "iss": DEV_ISSUER,
            "sub": client_id,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }
        if audience is not None:
            body["aud"] = audience
        if organization_number:
            body[ORGANIZATION_CLAIM] = organization_number
        if jkt:
            body["cnf"] = {"jkt": jkt}
        body.update(claims or {})
        key = load_private_key(self.issuer_key_file)
        head = {"typ": "at+jwt", "alg": "ES256", "kid": key.kid} | (header or {})
        return jwt.encode(head, body, key, algorithms=["ES256"])

    def service_token(self, service: str, *, now: float | None = None) -> str:
        """A token of the hub's service `service`, signed with the service key."""
        return service_token(load_private_key(self.service_key_file), service, now=now)
