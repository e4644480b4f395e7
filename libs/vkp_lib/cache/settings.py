"""The cache's settings (`VKP_CACHE_*`) and the cache a service opens from them.

Where the cache lives is the hub's Redis setting (`VKP_REDIS_URL`, `VKP_REDIS_KEY_PREFIX`, as for
DPoP replay checks): Redis when it is set, this process's memory otherwise. Its secrets — the
hash key of its keys, the keyring of its values — come from the environment or from files
(`..._FILE`, as a mounted secret). Without them a service refuses to start, except in development
mode, where they are made once in a file of the data folder.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis

from vkp_lib.cache.backends import Backend, MemoryBackend, RedisBackend
from vkp_lib.cache.cache import Cache
from vkp_lib.cache.sealing import HASH_KEY_MIN_BYTES, KEY_BYTES, Keyring, Sealer
from vkp_lib.errors import StartupError
from vkp_lib.logging import get_logger
from vkp_lib.settings import RuntimeSettings

log = get_logger("vkp.cache")

#: The development secrets' file, in the folder the service is given (its data folder).
DEVELOPMENT_FILE = "cache-keys.json"


class CacheSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VKP_CACHE_", extra="ignore", frozen=True)

    hash_key: SecretStr | None = Field(
        default=None,
        description=f"Base64 of at least {HASH_KEY_MIN_BYTES} random bytes: the HMAC key that "
        "makes the cache's keys. Unset (and no file): refused, except in development mode.",
    )
    hash_key_file: Path | None = Field(default=None, description="The hash key, in a file.")
    keys: SecretStr | None = Field(
        default=None,
        description=f"The keyring of the values: `id:base64,...`, each key {KEY_BYTES} bytes "
        "(AES-256); the first seals unless VKP_CACHE_CURRENT_KEY_ID names another; every one "
        "opens, so a key is rotated by putting a new one first and dropping the old one later.",
    )
    keys_file: Path | None = Field(default=None, description="The keyring, in a file.")
    current_key_id: str | None = Field(default=None, description="The key id that seals.")
    stale_seconds: float = Field(
        default=600.0,
        ge=0,
        le=86_400,
        description="How long past its fresh TTL a value may still be served, flagged stale, "
        "when its source fails.",
    )
    lock_margin_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="A fill's lock lives the fetch's deadline plus this.",
    )

    @model_validator(mode="after")
    def _one_source_each(self) -> CacheSettings:
        if self.hash_key is not None and self.hash_key_file is not None:
            raise ValueError("set VKP_CACHE_HASH_KEY or VKP_CACHE_HASH_KEY_FILE, not both")
        if self.keys is not None and self.keys_file is not None:
            raise ValueError("set VKP_CACHE_KEYS or VKP_CACHE_KEYS_FILE, not both")
        if self.keys is not None:
            parse_keyring(self.keys.get_secret_value(), self.current_key_id)
        if self.hash_key is not None:
            _hash_key(self.hash_key.get_secret_value())
        return self


@dataclass(frozen=True, repr=False)
class CacheSecrets:
    hash_key: bytes
    keyring: Keyring

    def __repr__(self) -> str:
        return f"CacheSecrets({self.keyring!r})"


def _decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


def _hash_key(text: str) -> bytes:
    key = _decode(text, "the cache hash key")
    if len(key) < HASH_KEY_MIN_BYTES:
        raise ValueError(f"the cache hash key must be at least {HASH_KEY_MIN_BYTES} bytes")
    return key


def parse_keyring(text: str, current: str | None = None) -> Keyring:
    """`id:base64,id:base64,...`; the first is current unless `current` names another."""
    keys: dict[str, bytes] = {}
    for item in (i.strip() for i in text.split(",")):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise ValueError("the cache keys must be written id:base64key,...")
        if key_id in keys:
            raise ValueError(f"the cache key id {key_id!r} is given twice")
        keys[key_id] = _decode(encoded, f"the cache key {key_id!r}")
    return Keyring(keys, current or next(iter(keys)))


def _read_file(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise StartupError(f"{what} {path} cannot be read ({exc.strerror})") from None


def _development_secrets(folder: Path) -> CacheSecrets:
    """The development secrets in `folder`, made on first use (readable by the owner only)."""
    path = folder / DEVELOPMENT_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        content = {
            "hash_key": base64.b64encode(os.urandom(HASH_KEY_MIN_BYTES)).decode(),
            "keys": "dev-1:" + base64.b64encode(os.urandom(KEY_BYTES)).decode(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(content, out)
        log.info("development cache keys made", path=str(path))
    try:
        stored = json.loads(path.read_text())
        return CacheSecrets(_hash_key(stored["hash_key"]), parse_keyring(stored["keys"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StartupError(f"the development cache keys {path} cannot be read ({exc})") from None


def cache_secrets(settings: CacheSettings, *, development: bool, folder: Path) -> CacheSecrets:
    """The hash key and keyring from the settings (or their files); in development mode, when
    neither is set, those in `folder`. Else `StartupError`."""
    hash_text = settings.hash_key.get_secret_value() if settings.hash_key else None
    if settings.hash_key_file is not None:
        hash_text = _read_file(settings.hash_key_file, "the cache hash key file")
    keys_text = settings.keys.get_secret_value() if settings.keys else None
    if settings.keys_file is not None:
        keys_text = _read_file(settings.keys_file, "the cache keys file")
    if hash_text is None and keys_text is None and development:
        return _development_secrets(folder)
    if hash_text is None or keys_text is None:
        raise StartupError(
            "VKP_CACHE_HASH_KEY and VKP_CACHE_KEYS (or their _FILE forms) are required: the "
            "cache's keys are keyed hashes and its values encrypted"
        )
    try:
        return CacheSecrets(_hash_key(hash_text), parse_keyring(keys_text, settings.current_key_id))
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def open_cache(
    runtime: RuntimeSettings,
    settings: CacheSettings,
    *,
    ttls: Mapping[str, float],
    folder: Path,
    redis: Redis | None = None,
) -> Cache:
    """The cache of a service: in Redis when `VKP_REDIS_URL` is set (or `redis` is given, kept
    open on close), else in memory; its secrets from `cache_secrets`."""
    secrets = cache_secrets(settings, development=runtime.development, folder=folder)
    backend: Backend
    if redis is not None:
        backend = RedisBackend(redis, owned=False)
    elif runtime.redis_url:
        backend = RedisBackend(Redis.from_url(runtime.redis_url))
    else:
        backend = MemoryBackend()
    return Cache(
        backend,
        Sealer(secrets.hash_key, secrets.keyring),
        prefix=runtime.redis_key_prefix,
        ttls=ttls,
        stale_seconds=settings.stale_seconds,
        lock_margin_seconds=settings.lock_margin_seconds,
    )
