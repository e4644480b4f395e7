"""Where a service keeps its data, from `VKP_DB_*` environment variables, validated at start."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class DatabaseSettings(BaseSettings):
    """A service's database: a URL, or else a SQLite file of its own under `data_dir`."""

    model_config = SettingsConfigDict(env_prefix="VKP_DB_", extra="ignore", frozen=True)

    url: str | None = Field(
        default=None,
        repr=False,
        description="sqlite+aiosqlite:///path/file.db or postgresql+asyncpg://user@host:port/db "
        "(plain sqlite:// and postgresql:// are accepted). Unset: <data_dir>/<service>.db.",
    )
    data_dir: Path = Field(
        default=Path(".vkp/data"),
        description="The folder of the services' SQLite files when `url` is unset.",
    )
    migrate_on_start: bool = Field(
        default=True, description="Bring the schema up to date (Alembic) when the service starts."
    )

    def url_for(self, service: str) -> str:
        """The service's database URL; without `url`, its SQLite file (the folder is created)."""
        if self.url is not None:
            return self.url
        if not _SERVICE_NAME.fullmatch(service):
            raise ValueError(f"not a service name: {service!r}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').absolute()}"
