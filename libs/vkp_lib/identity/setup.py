"""A service's authentication, put together from its settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from vkp_lib.identity.authenticator import TokenAuthenticator
from vkp_lib.identity.dpop import DpopVerifier, MemoryReplayCache, RedisReplayCache, ReplayCache
from vkp_lib.identity.issuer import (
    DEV_ISSUER,
    DEV_KID_PREFIX,
    SERVICE_TOKEN_TYPE,
    ServiceTokenSource,
    key_ids,
    load_private_key,
)
from vkp_lib.identity.keys import KeySource
from vkp_lib.identity.permissions import Permissions
from vkp_lib.identity.tokens import TokenVerifier
from vkp_lib.settings import AuthSettings, RuntimeSettings


class DevelopmentKeysRefused(ValueError):
    """The development issuer is configured, but development mode is off."""


def refuse_development_keys(auth: AuthSettings, runtime: RuntimeSettings) -> None:
    """Stops a service that would trust the development issuer outside development mode."""
    if runtime.development:
        return
    files = [f for f in (auth.jwks_file, auth.service_jwks_file) if f is not None]
    dev_kids = [
        kid for f in files if f.exists() for kid in key_ids(f) if kid.startswith(DEV_KID_PREFIX)
    ]
    if auth.issuer == DEV_ISSUER or dev_kids:
        raise DevelopmentKeysRefused(
            "the development token issuer is configured (VKP_AUTH_ISSUER or a vkp-dev- key), "
            "but VKP_DEVELOPMENT is not true: a deployment must trust its real issuer"
        )


@dataclass
class Authentication:
    """The authenticator of a service, and what it needs opened and closed."""

    authenticator: TokenAuthenticator
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def build_authentication(
    permissions: Permissions, auth: AuthSettings, runtime: RuntimeSettings
) -> Authentication:
    """The token authenticator of a service with these `permissions`."""
    refuse_development_keys(auth, runtime)
    vendor_keys = KeySource(
        file=auth.jwks_file,
        url=str(auth.jwks_url) if auth.jwks_url else None,
        min_refresh_seconds=auth.jwks_min_refresh_seconds,
        max_age_seconds=auth.jwks_max_age_seconds,
    )
    service_keys = KeySource(
        file=auth.service_jwks_file,
        min_refresh_seconds=auth.jwks_min_refresh_seconds,
        max_age_seconds=auth.jwks_max_age_seconds,
    )
    on_close: list[Callable[[], Awaitable[None]]] = []
    replay: ReplayCache
    if runtime.redis_url:
        redis = Redis.from_url(runtime.redis_url)
        replay = RedisReplayCache(redis, runtime.redis_key_prefix)
        on_close.append(redis.aclose)
    else:
        replay = MemoryReplayCache()
    authenticator = TokenAuthenticator(
        permissions,
        vendor=TokenVerifier(
            vendor_keys,
            issuer=auth.issuer,
            audience=auth.audience,
            skew_seconds=auth.clock_skew_seconds,
        ),
        service=TokenVerifier(
            service_keys,
            issuer=auth.service_issuer,
            audience=auth.service_audience,
            skew_seconds=auth.clock_skew_seconds,
            token_types=(SERVICE_TOKEN_TYPE,),
        ),
        dpop=DpopVerifier(
            base_url=auth.public_base_url,
            window_seconds=auth.dpop_window_seconds,
            replay=replay,
        ),
        dpop_required=auth.dpop_required,
        organization_claim=auth.organization_claim,
    )
    return Authentication(authenticator, on_start=[authenticator.load], on_close=on_close)


def service_token_source(auth: AuthSettings, service: str) -> ServiceTokenSource | None:
    """What this service signs its calls to the other services with, when it has a key."""
    if auth.service_key_file is None:
        return None
    return ServiceTokenSource(
        load_private_key(auth.service_key_file),
        service,
        issuer=auth.service_issuer,
        audience=auth.service_audience,
    )
