"""A cache of EPJ data for lookup: keyed-hash keys, AES-GCM values, one fetch per key across
replicas, stale-if-error within a bound; in Redis, or in memory for a single process.

- `sealing`: the keys' keyed hash and the values' encryption (a keyring, for rotation).
- `backends`: Redis and memory, the same few operations.
- `cache`: `Cache.get(kind, parts, fetch, deadline_seconds=...)` and its `CacheResult`.
- `settings`: `VKP_CACHE_*`, the secrets, and `open_cache`.
"""

from vkp_lib.cache.backends import Backend, BackendError, MemoryBackend, RedisBackend
from vkp_lib.cache.cache import (
    MAX_DEADLINE_SECONDS,
    Cache,
    CacheResult,
    FetchFailed,
    FetchTimeout,
    Source,
)
from vkp_lib.cache.sealing import Keyring, Sealer
from vkp_lib.cache.settings import CacheSecrets, CacheSettings, cache_secrets, open_cache

__all__ = [
    "MAX_DEADLINE_SECONDS",
    "Backend",
    "BackendError",
    "Cache",
    "CacheResult",
    "CacheSecrets",
    "CacheSettings",
    "FetchFailed",
    "FetchTimeout",
    "Keyring",
    "MemoryBackend",
    "RedisBackend",
    "Sealer",
    "Source",
    "cache_secrets",
    "open_cache",
]
