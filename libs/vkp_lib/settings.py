"""Settings every service shares, from `VKP_*` environment variables, validated at start.

Tracing and metrics are configured by the standard `OTEL_*` variables instead (see telemetry).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
