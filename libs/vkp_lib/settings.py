"""Settings every service shares, from `VKP_*` environment variables, validated at start.

Tracing and metrics are configured by the standard `OTEL_*` variables instead (see telemetry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vkp_lib.identity.issuer import ORGANIZATION_CLAIM, SERVICE_AUDIENCE, SERVICE_ISSUER

#: Requests larger than this are refused by the transport with RESOURCE_EXHAUSTED.
MAX_REQUEST_BYTES = 1024 * 1024


class RuntimeSettings(BaseSettings):
    """How a service process runs: logging, shutdown timing, connection lifetime."""

    model_config = SettingsConfigDict(env_prefix="VKP_", extra="ignore", frozen=True)

    development: bool = Field(
        default=False,
        description="Development mode: allows the development token issuer and synthetic data.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_drain_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="After SIGTERM, how long health says NOT_SERVING before the server stops "
        "accepting, so load balancers and readiness probes see it first.",
    )
    shutdown_grace_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long in-flight calls and background tasks get to finish on shutdown.",
    )
    max_connection_age_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Connections are closed after this age, so clients spread over new replicas.",
    )
    readiness_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often readiness checks of the service's dependencies run.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis, shared by the replicas (DPoP replay checks; lookup's cache). "
        "Without it, each process keeps its own.",
    )
    registry_target: str = Field(
        default="127.0.0.1:50051",
        description="The registry, for the services that call it (host:port or dns:///name:port).",
    )
    journaling_target: str = Field(
        default="127.0.0.1:50053", description="The journaling service, for ingest's relay."
    )
    ingest_target: str = Field(
        default="127.0.0.1:50052",
        description="The ingest service, for lookup's open-alarm query.",
    )
    audit_target: str = Field(
        default="127.0.0.1:50055", description="The audit service, for the services that record."
    )
    redis_key_prefix: str = Field(
        default="vkp:",
        description="Prefix of every Redis key the hub writes, so deployments can share a server.",
    )


class AuthSettings(BaseSettings):
    """Who may call: the vendor token issuer, DPoP, and the hub's own service identity."""

    model_config = SettingsConfigDict(env_prefix="VKP_AUTH_", extra="ignore", frozen=True)

    issuer: str = Field(description="The exact `iss` of vendor access tokens (HelseID).")
    audience: str = Field(default="vkp", description="The exact, single `aud` they must carry.")
    jwks_file: Path | None = Field(default=None, description="The issuer's JWKS, as a file.")
    jwks_url: AnyHttpUrl | None = Field(default=None, description="The issuer's JWKS URL.")
    jwks_min_refresh_seconds: float = Field(
        default=30.0,
        ge=0,
        description="An unknown key id reads the key set again at most this often.",
    )
    jwks_max_age_seconds: float = Field(
        default=3600.0, gt=0, description="A key set older than this is read again on next use."
    )
    clock_skew_seconds: float = Field(
        default=5.0, ge=0, le=60, description="Tolerance on exp, nbf, iat and DPoP iat."
    )
    organization_claim: str = Field(
        default=ORGANIZATION_CLAIM,
        description="The claim that carries the client's organisation number.",
    )
    dpop_required: bool = Field(
        default=False, description="Refuse tokens that are not DPoP-bound (RFC 9449)."
    )
    public_base_url: str = Field(
        default="http://localhost",
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="The URL vendors reach the hub at: DPoP proofs must name "
        "<this>/<package>.<Service>/<Method> as htu.",
    )
    dpop_window_seconds: float = Field(
        default=60.0,
        gt=0,
        le=600,
        description="How old a DPoP proof may be; its jti is remembered for twice this.",
    )
    service_issuer: str = Field(default=SERVICE_ISSUER, description="`iss` of service tokens.")
    service_audience: str = Field(default=SERVICE_AUDIENCE, description="`aud` of service tokens.")
    service_jwks_file: Path = Field(
        description="The public keys of the hub's service tokens (JWKS file)."
    )
    service_key_file: Path | None = Field(
        default=None,
        description="This service's private key for signing its own service tokens (JWK file).",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthSettings:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("set exactly one of VKP_AUTH_JWKS_FILE and VKP_AUTH_JWKS_URL")
        return self


class SettingsError(Exception):
    """Settings that do not validate: one line per problem, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(*classes: type[BaseSettings]) -> list[BaseSettings]:
    """Each settings class read from the environment, in order; every problem of every class
    at once (`SettingsError`), each line naming the variable (`VKP_INGEST_MAX_AGE_SECONDS: ...`)."""
    found: list[BaseSettings] = []
    problems: list[str] = []
    for settings_class in classes:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        try:
            found.append(settings_class())
        except ValidationError as exc:
            for problem in exc.errors():
                field = ".".join(str(p) for p in problem["loc"])
                name = f"{prefix}{field.upper()}" if field else prefix.rstrip("_")
                problems.append(f"{name}: {problem['msg']}")
    if problems:
        raise SettingsError(problems)
    return found
