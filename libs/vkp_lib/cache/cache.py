"""The cache of EPJ data: one fetch per key across replicas, stale data only within a bound.

`await cache.get(kind, parts, fetch, deadline_seconds=...)` (`get_many` for several keys with one
read of the store; `peek_many`, their fresh values only, never a fetch):

- **Hit**: a value younger than the kind's fresh TTL is returned as it is.
- **Miss** (none, too old, or unreadable): within this process, concurrent misses of one key
  share one fill (a task; a caller that gives up does not stop it for the others). The fill takes
  the key's lock (`SET NX PX`, its TTL the fetch's deadline plus a margin, so it outlives any
  fetch); the holder reads the key once more (another replica may just have filled it), fetches
  within the deadline, stores, and releases the lock (compare-and-delete). The others poll the
  key with short sleeps until the value is there, the holder reports a failed fetch, or the lock
  is gone (its holder died: the lock expired after its TTL), when they try to take it themselves.
- **Stale-if-error**: when the fetch raises or runs past its deadline (`FetchTimeout`), a value
  past its fresh TTL but within `stale_seconds` of it is returned flagged `STALE` with its age;
  else the error is raised (a waiter raises `FetchFailed`, or `FetchTimeout`, for a failure of
  another replica's fetch). Entries live fresh TTL + `stale_seconds` in the store.
- **The store unreachable**: the fetch is made without a lock and its value not kept (one
  warning when the store goes away, one line when it is back).

Every result says where it came from (`Source`) and how old the data is, for the answer's
freshness and the audit record.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from vkp_lib.cache.backends import Backend, BackendError
from vkp_lib.cache.sealing import Opened, Sealer, Unreadable
from vkp_lib.logging import get_logger

log = get_logger("vkp.cache")

Fetch = Callable[[], Awaitable[bytes]]

#: The longest fetch deadline a caller may give: a lock outlives its fetch, so this bounds how
#: long a dead holder's lock blocks a key.
MAX_DEADLINE_SECONDS = 60.0
_FIRST_POLL_SECONDS = 0.005
_MAX_POLL_SECONDS = 0.05


class Source(enum.Enum):
    HIT = "hit"  # from the cache, fresh (also: filled by another replica while this one waited)
    FETCHED = "fetched"  # fetched now, by this call or by the fill it joined in this process
    STALE = "stale"  # the fetch failed; past its fresh TTL, within the stale bound


@dataclass(frozen=True, repr=False)
class CacheResult:
    value: bytes
    source: Source
    fetched_at: float  # when the data was fetched from its source, seconds since the epoch
    age_seconds: float

    @property
    def stale(self) -> bool:
        return self.source is Source.STALE

    def __repr__(self) -> str:  # never the value
        return f"CacheResult({self.source.value}, age={self.age_seconds:.3f}s)"


class FetchTimeout(TimeoutError):
    """The fetch did not end within its deadline (here, or in the replica that held the lock)."""


class FetchFailed(Exception):
    """Another replica's fetch of this key failed, and there was no stale value to give."""


@dataclass(frozen=True)
class _Names:
    value: str
    lock: str
    failed: str


@dataclass(frozen=True)
class _Failed:
    timed_out: bool


class _Free:
    """The lock is gone without a fresh value: its holder died, or released it unfilled."""


class Cache:
    """Sealed values in a backend (Redis or memory), filled by `fetch` on a miss."""

    def __init__(
        self,
        backend: Backend,
        sealer: Sealer,
        *,
        prefix: str,
        ttls: Mapping[str, float],
        stale_seconds: float,
        lock_margin_seconds: float = 1.0,
        failure_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if stale_seconds < 0 or lock_margin_seconds <= 0 or failure_seconds <= 0:
            raise ValueError("stale_seconds >= 0, lock_margin_seconds and failure_seconds > 0")
        for kind, ttl in ttls.items():
            sealer.digest(kind, ())  # checks the kind's form
            if ttl <= 0:
                raise ValueError(f"the fresh TTL of {kind!r} must be positive")
        self._backend = backend
        self._sealer = sealer
        self._prefix = prefix
        self._ttls = dict(ttls)
        self._stale = stale_seconds
        self._margin = lock_margin_seconds
        self._failure_ms = _ms(failure_seconds)
        self._clock = clock
        self._flights: dict[str, asyncio.Task[CacheResult]] = {}
        self._logged: set[tuple[str, str, str]] = set()
        self._down = False

    @property
    def stale_seconds(self) -> float:
        return self._stale

    def key(self, kind: str, parts: Sequence[str | bytes]) -> str:
        """The store's key of (kind, parts): `<prefix>cache:<kind>:<keyed hash>`."""
        return f"{self._prefix}cache:{kind}:{self._sealer.digest(kind, parts)}"

    def lock_seconds(self, deadline_seconds: float) -> float:
        """The lock's TTL for a fetch with this deadline: longer than the deadline."""
        if not 0 < deadline_seconds <= MAX_DEADLINE_SECONDS:
            raise ValueError(f"the fetch deadline must be in (0, {MAX_DEADLINE_SECONDS}] seconds")
        return deadline_seconds + self._margin

    async def get(
        self, kind: str, parts: Sequence[str | bytes], fetch: Fetch, *, deadline_seconds: float
    ) -> CacheResult:
        """The value of (kind, parts): from the cache while fresh, else from `fetch` (given
        `deadline_seconds`), else stale within the bound; or the fetch's error. Callers that
        join a fill in flight share its fetch (theirs is not called)."""
        fresh = self._fresh_seconds(kind)
        lock_seconds = self.lock_seconds(deadline_seconds)
        names = self._names(kind, parts)
        flight = self._flights.get(names.value)
        if flight is None:
            seen = await self._read(kind, names.value)
            if seen is not None and self._age(seen) < fresh:
                return CacheResult(seen.value, Source.HIT, seen.fetched_at, self._age(seen))
            flight = self._flight(kind, names, fetch, deadline_seconds, lock_seconds, fresh, seen)
        return await asyncio.shield(flight)

    async def get_many(
        self,
        requests: Sequence[tuple[str, Sequence[str | bytes], Fetch]],
        *,
        deadline_seconds: float,
    ) -> list[CacheResult]:
        """`get` of each (kind, parts, fetch), in order, with one read of the store for them
        all (one MGET): the fresh ones are hits; each miss goes on as `get`'s does (concurrent
        misses of a key share one fill, one fetch per key across replicas, stale-if-error),
        the misses concurrently. An error of a fetch is raised once every miss has ended."""
        lock_seconds = self.lock_seconds(deadline_seconds)
        keyed = [(kind, self._names(kind, parts), fetch) for kind, parts, fetch in requests]
        seen = await self._read_many([(kind, names.value) for kind, names, _ in keyed])
        results: list[CacheResult | None] = []
        misses: list[asyncio.Future[CacheResult]] = []
        for (kind, names, fetch), opened in zip(keyed, seen, strict=True):
            fresh = self._fresh_seconds(kind)
            if opened is not None and self._age(opened) < fresh:
                age = self._age(opened)
                results.append(CacheResult(opened.value, Source.HIT, opened.fetched_at, age))
                continue
            flight = self._flights.get(names.value) or self._flight(
                kind, names, fetch, deadline_seconds, lock_seconds, fresh, opened
            )
            misses.append(asyncio.shield(flight))
            results.append(None)
        if misses:
            fetched = iter(await _all_ended(misses))
            results = [found if found is not None else next(fetched) for found in results]
        return [found for found in results if found is not None]

    async def peek_many(
        self, requests: Sequence[tuple[str, Sequence[str | bytes]]]
    ) -> list[CacheResult | None]:
        """The fresh value of each (kind, parts), in order, or None (missing, too old,
        unreadable, or the store unreachable): one read of the store, never a fetch. For a
        caller that may not fetch yet (lookup, before its access decision is made)."""
        keys = [(kind, self._names(kind, parts).value) for kind, parts in requests]
        seen = await self._read_many(keys)
        found: list[CacheResult | None] = []
        for (kind, _), opened in zip(keys, seen, strict=True):
            fresh = self._fresh_seconds(kind)
            if opened is not None and self._age(opened) < fresh:
                age = self._age(opened)
                found.append(CacheResult(opened.value, Source.HIT, opened.fetched_at, age))
            else:
                found.append(None)
        return found

    async def invalidate(self, kind: str, parts: Sequence[str | bytes]) -> None:
        """Forgets the value of (kind, parts). A fill already in flight still stores its own."""
        self._fresh_seconds(kind)
        digest = self._sealer.digest(kind, parts)
        await self._backend.delete(
            f"{self._prefix}cache:{kind}:{digest}", f"{self._prefix}cache-failed:{kind}:{digest}"
        )

    async def close(self) -> None:
        """Stops the fills in flight and closes the backend."""
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        for flight in flights:
            with contextlib.suppress(BaseException):
                await flight
        await self._backend.close()

    # -- the fill --------------------------------------------------------------------------

    async def _fill(
        self,
        kind: str,
        names: _Names,
        fetch: Fetch,
        deadline: float,
        lock_seconds: float,
        fresh: float,
        seen: Opened | None,
    ) -> CacheResult:
        token = secrets.token_hex(16).encode()
        give_up_at = time.monotonic() + 3 * lock_seconds
        while True:
            try:
                held = await self._backend.acquire(names.lock, token, _ms(lock_seconds))
            except BackendError as exc:
                self._unavailable(exc)
                return await self._fetch(kind, names, fetch, deadline, fresh, seen, report=False)
            if held:
                try:
                    return await self._fill_holding(kind, names, fetch, deadline, fresh, seen)
                finally:
                    with contextlib.suppress(BackendError):
                        await self._backend.release(names.lock, token)
            outcome = await self._wait(kind, names, fresh, give_up_at)
            if outcome is None:  # the store went away while waiting
                return await self._fetch(kind, names, fetch, deadline, fresh, seen, report=False)
            if isinstance(outcome, _Failed):
                error: Exception = (
                    FetchTimeout(f"another caller's fetch of this {kind} timed out")
                    if outcome.timed_out
                    else FetchFailed(f"another caller's fetch of this {kind} failed")
                )
                return self._stale_or_raise(seen, fresh, error)
            if isinstance(outcome, Opened):
                if self._age(outcome) < fresh:
                    age = self._age(outcome)
                    return CacheResult(outcome.value, Source.HIT, outcome.fetched_at, age)
                seen = outcome
            if time.monotonic() > give_up_at:
                error = FetchTimeout(f"no fetch of this {kind} ended in time")
                return self._stale_or_raise(seen, fresh, error)

    async def _fill_holding(
        self,
        kind: str,
        names: _Names,
        fetch: Fetch,
        deadline: float,
        fresh: float,
        seen: Opened | None,
    ) -> CacheResult:
        """With the lock: filled by another replica just before? Else fetch and store."""
        try:
            await self._backend.delete(names.failed)  # a failure of an earlier round
            (raw,) = await self._backend.get_many([names.value])
        except BackendError as exc:
            self._unavailable(exc)
            raw = None
        latest = self._open(kind, names.value, raw) if raw is not None else None
        if latest is not None:
            if self._age(latest) < fresh:
                return CacheResult(latest.value, Source.HIT, latest.fetched_at, self._age(latest))
            seen = latest
        return await self._fetch(kind, names, fetch, deadline, fresh, seen, report=True)

    async def _fetch(
        self,
        kind: str,
        names: _Names,
        fetch: Fetch,
        deadline: float,
        fresh: float,
        seen: Opened | None,
        *,
        report: bool,
    ) -> CacheResult:
        """`fetch` within `deadline`, stored; on failure stale or the error (and, when
        `report`, the failure left for the replicas waiting on this fill)."""
        started = self._clock()
        try:
            async with asyncio.timeout(deadline) as within:
                value = await fetch()
        except Exception as exc:
            error: Exception = exc
            if isinstance(exc, TimeoutError) and within.expired():
                error = FetchTimeout(f"the fetch of this {kind} took over {deadline:g} s")
            if report:
                reason = b"timeout" if isinstance(error, TimeoutError) else b"error"
                with contextlib.suppress(BackendError):
                    await self._backend.put(names.failed, reason, self._failure_ms)
            return self._stale_or_raise(seen, fresh, error)
        sealed = self._sealer.seal(names.value, value, started)
        try:
            await self._backend.put(names.value, sealed, _ms(fresh + self._stale))
        except BackendError as exc:
            self._unavailable(exc)
        return CacheResult(value, Source.FETCHED, started, max(0.0, self._clock() - started))

    async def _wait(
        self, kind: str, names: _Names, fresh: float, give_up_at: float
    ) -> Opened | _Failed | _Free | None:
        """Polls while another holds the lock: the value (fresh, or the latest seen when the
        lock is gone), the holder's failure, `_Free`, or None when the store is unreachable."""
        pause = _FIRST_POLL_SECONDS
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, _MAX_POLL_SECONDS)
            try:
                raw, failed, lock = await self._backend.get_many(
                    [names.value, names.failed, names.lock]
                )
            except BackendError as exc:
                self._unavailable(exc)
                return None
            opened = self._open(kind, names.value, raw) if raw is not None else None
            if opened is not None and self._age(opened) < fresh:
                return opened
            if failed is not None:
                return _Failed(timed_out=failed == b"timeout")
            if lock is None or time.monotonic() > give_up_at:
                return opened or _Free()

    # -- helpers ---------------------------------------------------------------------------

    def _names(self, kind: str, parts: Sequence[str | bytes]) -> _Names:
        digest = self._sealer.digest(kind, parts)
        return _Names(
            value=f"{self._prefix}cache:{kind}:{digest}",
            lock=f"{self._prefix}cache-lock:{kind}:{digest}",
            failed=f"{self._prefix}cache-failed:{kind}:{digest}",
        )

    def _flight(
        self,
        kind: str,
        names: _Names,
        fetch: Fetch,
        deadline: float,
        lock_seconds: float,
        fresh: float,
        seen: Opened | None,
    ) -> asyncio.Task[CacheResult]:
        """The fill of this key in flight in this process: the one begun, else a new one."""
        flight = self._flights.get(names.value)
        if flight is None:
            fill = self._fill(kind, names, fetch, deadline, lock_seconds, fresh, seen)
            flight = asyncio.create_task(fill, name=f"cache fill {kind}")
            self._flights[names.value] = flight
            flight.add_done_callback(lambda done: self._landed(names.value, done))
        return flight

    async def _read_many(self, keys: Sequence[tuple[str, str]]) -> list[Opened | None]:
        """The opened values of these (kind, key)s, one read of the store; all None when the
        store is unreachable."""
        try:
            raws = await self._backend.get_many([key for _, key in keys])
        except BackendError as exc:
            self._unavailable(exc)
            return [None] * len(keys)
        if self._down:
            self._down = False
            log.info("cache store reachable again")
        return [
            self._open(kind, key, raw) if raw is not None else None
            for (kind, key), raw in zip(keys, raws, strict=True)
        ]

    def _stale_or_raise(self, seen: Opened | None, fresh: float, error: Exception) -> CacheResult:
        if seen is not None:
            age = self._age(seen)
            if age <= fresh + self._stale:
                return CacheResult(seen.value, Source.STALE, seen.fetched_at, age)
        raise error

    async def _read(self, kind: str, key: str) -> Opened | None:
        (opened,) = await self._read_many([(kind, key)])
        return opened

    def _open(self, kind: str, key: str, raw: bytes) -> Opened | None:
        """The value, or None (a miss) when it does not open: logged once per kind, reason
        and key id, never with any of the data."""
        try:
            return self._sealer.open(key, raw)
        except Unreadable as exc:
            seen = (kind, exc.reason, exc.key_id)
            if seen not in self._logged:
                self._logged.add(seen)
                log.warning(
                    "cached value unreadable, taken as a miss",
                    kind=kind,
                    reason=exc.reason,
                    key_id=exc.key_id,
                )
            return None

    def _unavailable(self, exc: BackendError) -> None:
        if not self._down:
            self._down = True
            log.warning("cache store unavailable, fetching without it", error_type=str(exc))

    def _age(self, opened: Opened) -> float:
        return max(0.0, self._clock() - opened.fetched_at)

    def _fresh_seconds(self, kind: str) -> float:
        try:
            return self._ttls[kind]
        except KeyError:
            raise ValueError(f"unknown cache kind {kind!r}") from None

    def _landed(self, key: str, flight: asyncio.Task[CacheResult]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: every caller may have given up


async def _all_ended(futures: Sequence[asyncio.Future[CacheResult]]) -> list[CacheResult]:
    """Each future's value once all have ended; the first error (in order) raised then."""
    ended = await asyncio.gather(*futures, return_exceptions=True)
    values: list[CacheResult] = []
    for outcome in ended:
        if isinstance(outcome, BaseException):
            raise outcome
        values.append(outcome)
    return values


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
