"""The registry service's own settings, from `VKP_REGISTRY_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VKP_REGISTRY_", extra="ignore", frozen=True)

    poll_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often a replica reads the changes other replicas committed (its own "
        "writes it reads at once).",
    )
