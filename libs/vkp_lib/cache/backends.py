"""Where the cache keeps its entries: Redis, shared by the replicas, or this process's memory.

Both offer the same few operations with the same meaning, so the cache's logic is written once:
entries with a time to live, and locks (`acquire` sets the key only when it is not there, with a
time to live; `release` deletes it only while it still holds the caller's token). Failures of the
store come out as `BackendError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

#: Deletes the lock only while it still holds the caller's token (compare-and-delete).
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class BackendError(Exception):
    """The store could not be reached or answered with an error."""


class Backend(Protocol):
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Sets `key` to `token` for `ttl_ms` unless it exists; whether it was set."""
        ...

    async def release(self, key: str, token: bytes) -> None:
        """Deletes `key` if it still holds `token`."""
        ...

    async def close(self) -> None: ...


class RedisBackend:
    """Entries in Redis: `SET PX`, `MGET`, `SET NX PX` for locks, a Lua compare-and-delete."""

    def __init__(self, redis: Redis, *, owned: bool = True) -> None:
        self._redis = redis
        self._owned = owned
        self._release = redis.register_script(RELEASE_SCRIPT)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            values = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            raise BackendError(type(exc).__name__) from None
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        try:
            await self._redis.set(key, value, px=max(1, ttl_ms))
        except (RedisError, OSError) as exc:
            raise BackendError(type(exc).__name__) from None

    async def delete(self, *keys: str) -> None:
        try:
            await self._redis.delete(*keys)
        except (RedisError, OSError) as exc:
            raise BackendError(type(exc).__name__) from None

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        try:
            return bool(await self._redis.set(key, token, nx=True, px=max(1, ttl_ms)))
        except (RedisError, OSError) as exc:
            raise BackendError(type(exc).__name__) from None

    async def release(self, key: str, token: bytes) -> None:
        try:
            await self._release(keys=[key], args=[token])
        except (RedisError, OSError) as exc:
            raise BackendError(type(exc).__name__) from None

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()


class MemoryBackend:
    """Entries in this process (one replica, development, tests): the same meaning as Redis's,
    expired entries swept now and then."""

    SWEEP_EVERY = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._clock = clock
        self._writes = 0

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        return entry[0]

    def _set(self, key: str, value: bytes, ttl_ms: int, now: float) -> None:
        self._entries[key] = (value, now + max(1, ttl_ms) / 1000)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            self._entries = {k: e for k, e in self._entries.items() if e[1] > now}

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        return [self._live(key, now) for key in keys]

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._set(key, value, ttl_ms, self._clock())

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        now = self._clock()
        if self._live(key, now) is not None:
            return False
        self._set(key, token, ttl_ms, now)
        return True

    async def release(self, key: str, token: bytes) -> None:
        if self._live(key, self._clock()) == token:
            del self._entries[key]

    async def close(self) -> None:
        self._entries.clear()
