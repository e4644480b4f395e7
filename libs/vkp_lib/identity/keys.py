"""JSON Web Key Sets: where signing keys come from.

A `KeySource` reads a JWKS from a file or fetches it from a URL, keeps it, and looks keys up by
`kid`. A token signed by a key it does not know makes it read the set again, but at most once
per `min_refresh_seconds`, so a flood of tokens with made-up key ids cannot turn into a flood of
fetches. A set older than `max_age_seconds` is read again on next use; if that fails, the keys
already known stay in use.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import Key, KeySet

from vkp_lib.logging import get_logger

log = get_logger("vkp.identity")


class KeySourceError(Exception):
    """The key set could not be read."""


class KeySource:
    """The keys of one JWKS (a file or an https URL), looked up by `kid`."""

    def __init__(
        self,
        *,
        file: Path | None = None,
        url: str | None = None,
        min_refresh_seconds: float = 30.0,
        max_age_seconds: float = 3600.0,
        fetch_timeout_seconds: float = 5.0,
    ) -> None:
        if (file is None) == (url is None):
            raise ValueError("a key source needs exactly one of a file and a URL")
        self._file, self._url = file, url
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._timeout = fetch_timeout_seconds
        self._keys: dict[str, Key] = {}
        self._loaded_at: float | None = None
        self._last_attempt = -float("inf")  # any read
        self._last_unknown = -float("inf")  # a read for an unknown kid
        self._lock = asyncio.Lock()
        self.refreshes = 0  # how many times the set was read; for tests and metrics

    @property
    def location(self) -> str:
        return str(self._file) if self._file is not None else str(self._url)

    async def _read(self) -> Any:
        if self._file is not None:
            text = await asyncio.to_thread(self._file.read_text)
            return json.loads(text)
        assert self._url is not None
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            response = await client.get(self._url, headers={"accept": "application/json"})
            response.raise_for_status()
            return response.json()

    async def _refresh(self) -> None:
        self._last_attempt = time.monotonic()
        self.refreshes += 1
        try:
            data = await self._read()
            key_set = KeySet.import_key_set(data)
        except (OSError, ValueError, httpx.HTTPError) as exc:
            log.warning("key set not read", source=self.location, error=type(exc).__name__)
            if self._loaded_at is None:
                raise KeySourceError(f"the key set at {self.location} could not be read") from exc
            return
        keys = {str(key.kid): key for key in key_set.keys if key.kid}
        self._keys, self._loaded_at = keys, time.monotonic()
        log.debug("key set read", source=self.location, keys=len(keys))

    async def load(self) -> None:
        """Reads the set now (at start, so a wrong location fails early)."""
        async with self._lock:
            await self._refresh()

    def _stale(self) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at > self._max_age

    async def get(self, kid: str) -> Key | None:
        """The key with this id. An unknown id reads the set again, at most once per
        `min_refresh_seconds`; an old set is read again, retried at most as often."""
        if kid in self._keys and not self._stale():
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            if kid in self._keys:
                if self._stale() and now - self._last_attempt >= self._min_refresh:
                    await self._refresh()
                return self._keys.get(kid)  # a known key serves on while the set is unreadable
            if now - self._last_unknown >= self._min_refresh:
                self._last_unknown = now
                await self._refresh()
            return self._keys.get(kid)

    def kids(self) -> list[str]:
        return sorted(self._keys)
