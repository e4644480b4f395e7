"""The audit service's own settings, from `VKP_AUDIT_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VKP_AUDIT_", extra="ignore", frozen=True)

    checkpoint_key_file: Path | None = Field(
        default=None,
        description="The Ed25519 private key (PEM) that signs checkpoints, kept outside the "
        "database. Unset: refused, except in development mode, where one is made in the data "
        "folder.",
    )
    checkpoint_interval_seconds: float = Field(
        default=300.0, gt=0, description="How often the moved chain heads are signed."
    )
    verify_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often every chain is verified (and the metric set)."
    )
