"""The lookup service's own settings, from `VKP_LOOKUP_*` environment variables."""

from __future__ import annotations

from pathlib import Path

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
    allow_synthetic_ids: bool | None = Field(
        default=None,
        description="Accept synthetic national ids (month + 80). Unset: only in development mode.",
    )
    epj_deadline_seconds: float = Field(
        default=3.0,
        gt=0,
        le=30,
        description="How long one read of the EPJ (all the pages of one kind of data) may take.",
    )
    epj_secrets_dir: Path | None = Field(
        default=None,
        description="Folder of the EPJ credentials the endpoints name (also VKP_EPJ_SECRET_*).",
    )
    endpoint_ttl_seconds: float = Field(
        default=30.0, gt=0, description="How long a municipality's EPJ endpoint is kept."
    )
    registry_stale_after_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Access decisions are dropped once the registry's change feed has been "
        "down this long.",
    )
    cache_ttl_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="How long the EPJ's demographics (patient, next of kin, GP) are served from "
        "the cache before they are fetched again.",
    )
    cache_service_ttl_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="The same for what the service need and a response depend on: services "
        "(EpisodeOfCare), visit plans, allergies and warnings.",
    )
