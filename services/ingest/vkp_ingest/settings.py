"""The ingest service's own settings, from `VKP_INGEST_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VKP_INGEST_", extra="ignore", frozen=True)

    allow_synthetic_ids: bool | None = Field(
        default=None,
        description="Accept synthetic national ids (month + 80). Unset: only in development mode.",
    )
    future_skew_seconds: float = Field(
        default=300.0, ge=0, description="How far in the future an event's time may be."
    )
    max_age_seconds: float = Field(
        default=7 * 86400.0, gt=0, description="How old an event may be when it arrives."
    )
    relay_batch: int = Field(default=500, ge=1, le=500, description="Events per Enqueue call.")
    relay_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Idle wait of the relay: a registration in the same process wakes it at "
        "once, so this only bounds how late another replica's registrations are found.",
    )
    relay_lease_seconds: float = Field(
        default=10.0, gt=0, description="How long one replica's relay holds the outbox."
    )
