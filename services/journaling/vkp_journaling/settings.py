"""The journaling service's own settings, from `VKP_JOURNALING_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class JournalingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VKP_JOURNALING_", extra="ignore", frozen=True)

    workers: int = Field(
        default=32, ge=1, le=256, description="Deliveries at once per process (patient queues)."
    )
    lease_seconds: float = Field(
        default=30.0, gt=0, description="How long a worker holds a patient queue; a crash frees it."
    )
    max_attempts: int = Field(default=8, ge=1, description="Deliveries before a note is dead.")
    max_age_seconds: float = Field(
        default=86400.0, gt=0, description="Age after which a failing note is dead."
    )
    backoff_base_seconds: float = Field(default=0.5, gt=0, description="First retry delay.")
    backoff_max_seconds: float = Field(default=60.0, gt=0, description="Longest retry delay.")
    breaker_threshold: int = Field(
        default=5, ge=1, description="Failures in a row that pause a municipality's EPJ."
    )
    breaker_cooldown_seconds: float = Field(
        default=2.0, gt=0, description="First pause of an open breaker (doubles up to 30 s)."
    )
    poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often idle workers look for work queued through another replica "
        "(work queued here, and retries falling due, wake them at once).",
    )
    pull_read_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Pull mode: how long a note fetched by ListPending waits for its "
        "acknowledgement before it is offered again (with a new number, at the tail).",
    )
    alarm_settle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Alarm handling logs: how long after an alarm's closing step its log waits "
        "for steps still on their way (they may arrive out of order) before it is journaled.",
    )
    alarm_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="Alarm handling logs: an alarm still open this long after the first step "
        "of its current segment has that segment journaled as it is; its later steps make the "
        "next segment.",
    )
    epj_secrets_dir: Path | None = Field(
        default=None, description="A folder of EPJ credentials, one file per secret name."
    )
