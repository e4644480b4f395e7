"""The lookup service's own settings, from `VKP_LOOKUP_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LookupSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VKP_LOOKUP_", extra="ignore", frozen=True)

    alarm_grace_seconds: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        description="How long after an alarm closes its responder data may still be looked up.",
    )
