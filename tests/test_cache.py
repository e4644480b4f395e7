"""vkp_lib.cache against the real Redis (and its in-process backend): hits, misses and TTLs,
one fetch per key across real processes, a killed lock holder, stale-if-error, what lies in Redis,
sealing (moved values, key rotation) and the settings.

Run as a script (`python tests/test_cache.py crowd|holder ...`) this file is the other process
of the cross-process tests: a cache made from the environment, as a service makes it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from redis.asyncio import Redis

from vkp_lib.cache import (
    Backend,
    Cache,
    CacheResult,
    CacheSettings,
    FetchFailed,
    FetchTimeout,
    Keyring,
    MemoryBackend,
    RedisBackend,
    Sealer,
    Source,
    cache_secrets,
    open_cache,
)
from vkp_lib.cache.settings import parse_keyring
from vkp_lib.errors import StartupError
from vkp_lib.settings import RuntimeSettings
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.plugin import REDIS_URL
from vkp_lib.testing.sensitive import SensitiveData

HASH_KEY = base64.b64encode(b"h" * 32).decode()
OLD_KEY = base64.b64encode(b"o" * 32).decode()
NEW_KEY = base64.b64encode(b"n" * 32).decode()
MUNICIPALITY = "4699"
PERSON = TEST_PEOPLE[0]
PARTS = (MUNICIPALITY, PERSON.national_id)
TTLS = {"patient": 30.0}


def _payload() -> bytes:
    """What lookup would keep: the synthetic person's name, address and national id."""
    data = {"id": PERSON.national_id, "name": PERSON.name, "address": PERSON.address}
    return json.dumps(data, ensure_ascii=False).encode()


def _sealer(keys: dict[str, str] | None = None, current: str = "old") -> Sealer:
    keys = keys or {"old": OLD_KEY}
    ring = Keyring({k: base64.b64decode(v) for k, v in keys.items()}, current)
    return Sealer(base64.b64decode(HASH_KEY), ring)


class Counter:
    """A fetch that counts its calls, and can be told to fail or hang."""

    def __init__(self, value: bytes = b"", *, pause: float = 0.0) -> None:
        self.value = value or _payload()
        self.pause = pause
        self.calls = 0
        self.started: list[float] = []
        self.error: Exception | None = None

    async def __call__(self) -> bytes:
        self.calls += 1
        self.started.append(time.monotonic())
        if self.pause:
            await asyncio.sleep(self.pause)
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    """A prefix of this test's own, under the run's (deleted at the end of the run)."""
    return f"{redis_prefix}{uuid.uuid4().hex[:8]}:"


CacheMaker = Callable[..., Cache]


@pytest.fixture
async def make_cache(prefix: str) -> AsyncIterator[CacheMaker]:
    """Caches on the real Redis under the test's prefix; closed after the test."""
    made: list[Cache] = []

    def make(
        *,
        ttls: dict[str, float] | None = None,
        stale_seconds: float = 600.0,
        sealer: Sealer | None = None,
        backend: Backend | None = None,
    ) -> Cache:
        cache = Cache(
            backend or RedisBackend(Redis.from_url(REDIS_URL)),
            sealer or _sealer(),
            prefix=prefix,
            ttls=ttls or TTLS,
            stale_seconds=stale_seconds,
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


@pytest.fixture(params=["redis", "memory"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def _backend(kind: str) -> Backend:
    return RedisBackend(Redis.from_url(REDIS_URL)) if kind == "redis" else MemoryBackend()


# -- hits, misses, TTLs ---------------------------------------------------------------------


async def test_a_miss_is_fetched_then_hit(make_cache: CacheMaker, backend_kind: str) -> None:
    cache = make_cache(backend=_backend(backend_kind))
    fetch = Counter()
    first = await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    second = await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    assert (first.source, second.source) == (Source.FETCHED, Source.HIT)
    assert first.value == second.value == _payload()
    assert fetch.calls == 1
    assert second.fetched_at == pytest.approx(first.fetched_at)
    assert 0 <= second.age_seconds < 1


async def test_other_parts_are_another_key(make_cache: CacheMaker) -> None:
    cache = make_cache()
    fetch = Counter()
    await cache.get("patient", ("ab", "c"), fetch, deadline_seconds=1)
    other = await cache.get("patient", ("a", "bc"), fetch, deadline_seconds=1)
    assert other.source is Source.FETCHED
    assert fetch.calls == 2
    assert cache.key("patient", ("ab", "c")) != cache.key("patient", ("a", "bc"))


async def test_an_entry_past_its_fresh_ttl_is_fetched_again(
    make_cache: CacheMaker, backend_kind: str
) -> None:
    cache = make_cache(ttls={"patient": 0.2}, backend=_backend(backend_kind))
    fetch = Counter()
    await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    assert (await cache.get("patient", PARTS, fetch, deadline_seconds=1)).source is Source.HIT
    await asyncio.sleep(0.3)
    again = await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    assert again.source is Source.FETCHED
    assert fetch.calls == 2


async def test_invalidate_makes_the_next_get_fetch(make_cache: CacheMaker) -> None:
    cache = make_cache()
    fetch = Counter()
    await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    await cache.invalidate("patient", PARTS)
    assert (await cache.get("patient", PARTS, fetch, deadline_seconds=1)).source is Source.FETCHED
    assert fetch.calls == 2


async def test_the_lock_outlives_the_fetch_deadline_and_bad_deadlines_are_refused(
    make_cache: CacheMaker,
) -> None:
    cache = make_cache()
    assert cache.lock_seconds(2.0) > 2.0
    for deadline in (0, -1, 61):
        with pytest.raises(ValueError, match="deadline"):
            await cache.get("patient", PARTS, Counter(), deadline_seconds=deadline)
    with pytest.raises(ValueError, match="unknown cache kind"):
        await cache.get("visits", PARTS, Counter(), deadline_seconds=1)


# -- one fetch per key ----------------------------------------------------------------------


def _worker_env(prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "VKP_REDIS_URL": REDIS_URL,
        "VKP_REDIS_KEY_PREFIX": prefix,
        "VKP_CACHE_HASH_KEY": HASH_KEY,
        "VKP_CACHE_KEYS": f"old:{OLD_KEY}",
    }


def _worker(prefix: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        env=_worker_env(prefix),
        stdout=subprocess.PIPE,
        text=True,
    )


class CountingBackend:
    """The real Redis backend, with its lock attempts counted."""

    def __init__(self, inner: RedisBackend) -> None:
        self.inner = inner
        self.acquires = 0

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.inner.get_many(keys)

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self.inner.put(key, value, ttl_ms)

    async def delete(self, *keys: str) -> None:
        await self.inner.delete(*keys)

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        self.acquires += 1
        return await self.inner.acquire(key, token, ttl_ms)

    async def release(self, key: str, token: bytes) -> None:
        await self.inner.release(key, token)

    async def close(self) -> None:
        await self.inner.close()


async def test_concurrent_misses_in_one_process_make_one_lock_attempt_and_one_fetch(
    make_cache: CacheMaker,
) -> None:
    backend = CountingBackend(RedisBackend(Redis.from_url(REDIS_URL)))
    cache = make_cache(backend=backend)
    fetch = Counter(pause=0.2)
    results = await asyncio.gather(
        *(cache.get("patient", PARTS, fetch, deadline_seconds=2) for _ in range(100))
    )
    assert fetch.calls == 1
    assert backend.acquires == 1
    assert {r.value for r in results} == {_payload()}


async def test_two_processes_with_100_concurrent_gets_each_fetch_once(
    prefix: str, redis: Redis
) -> None:
    counter = f"{prefix}fetches"
    start_at = str(time.time() + 2.0)  # both processes imported and ready by then
    workers = [_worker(prefix, "crowd", counter, start_at) for _ in range(2)]
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0
        reports.append(json.loads(out))
    assert int(await redis.get(counter) or 0) == 1
    assert all(r["values_ok"] and r["count"] == 100 for r in reports)
    # One process fetched (its 100 callers shared the fill); the other waited and took the value.
    assert sorted(sorted(r["sources"]) for r in reports) == [["fetched"], ["hit"]]


async def test_a_killed_lock_holder_blocks_the_key_until_its_lock_expires(
    prefix: str, redis: Redis, make_cache: CacheMaker
) -> None:
    holder = _worker(prefix, "holder")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "fetching"  # it holds the lock, its fetch sleeps
    digest = _sealer().digest("patient", PARTS)
    lock = f"{prefix}cache-lock:patient:{digest}"
    read_at = time.monotonic()
    left_ms = await redis.pttl(lock)
    assert left_ms > 1000
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    holder.stdout.close()
    expires_at = read_at + left_ms / 1000

    cache = make_cache()
    fetch = Counter()
    result = await cache.get("patient", PARTS, fetch, deadline_seconds=3)
    assert result.source is Source.FETCHED
    assert fetch.calls == 1
    assert fetch.started[0] >= expires_at - 0.02  # not before the lock's TTL ran out
    assert fetch.started[0] <= expires_at + 0.5  # and soon after


# -- stale-if-error -------------------------------------------------------------------------


async def test_a_failing_fetch_gets_stale_data_within_the_bound_then_the_error(
    make_cache: CacheMaker, backend_kind: str
) -> None:
    cache = make_cache(ttls={"patient": 0.2}, stale_seconds=0.6, backend=_backend(backend_kind))
    fetch = Counter()
    await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    await asyncio.sleep(0.3)  # past its fresh TTL
    fetch.error = ConnectionError("EPJ down")
    stale = await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    assert stale.source is Source.STALE
    assert stale.stale
    assert stale.value == _payload()
    assert 0.3 <= stale.age_seconds < 0.8
    await asyncio.sleep(0.6)  # past fresh TTL + stale bound
    with pytest.raises(ConnectionError, match="EPJ down"):
        await cache.get("patient", PARTS, fetch, deadline_seconds=1)
    assert fetch.calls == 3


async def test_a_fetch_past_its_deadline_gets_stale_data_or_a_fetch_timeout(
    make_cache: CacheMaker, backend_kind: str
) -> None:
    cache = make_cache(ttls={"patient": 0.1}, backend=_backend(backend_kind))
    await cache.get("patient", PARTS, Counter(), deadline_seconds=1)
    await asyncio.sleep(0.15)
    hanging = Counter(pause=5)
    stale = await cache.get("patient", PARTS, hanging, deadline_seconds=0.2)
    assert stale.source is Source.STALE
    with pytest.raises(FetchTimeout):
        await cache.get("patient", ("4699", "someone else"), hanging, deadline_seconds=0.2)


async def test_a_failed_fetch_is_shared_with_the_replicas_waiting_on_it(
    make_cache: CacheMaker,
) -> None:
    first, second = make_cache(), make_cache()  # two replicas: their own flights and clients
    failing = Counter(pause=0.3)
    failing.error = ConnectionError("EPJ down")
    holder = asyncio.create_task(first.get("patient", PARTS, failing, deadline_seconds=1))
    await asyncio.sleep(0.1)  # the first holds the lock and fetches
    with pytest.raises(FetchFailed):
        await second.get("patient", PARTS, failing, deadline_seconds=1)
    with pytest.raises(ConnectionError):
        await holder
    assert failing.calls == 1


async def test_in_process_backend_single_flight_shares_a_failure_as_stale(
    make_cache: CacheMaker,
) -> None:
    cache = make_cache(ttls={"patient": 0.1}, backend=MemoryBackend())
    await cache.get("patient", PARTS, Counter(), deadline_seconds=1)
    await asyncio.sleep(0.15)
    failing = Counter(pause=0.1)
    failing.error = ConnectionError("EPJ down")
    results = await asyncio.gather(
        *(cache.get("patient", PARTS, failing, deadline_seconds=1) for _ in range(50))
    )
    assert failing.calls == 1
    assert {r.source for r in results} == {Source.STALE}


async def test_in_process_backend_concurrent_misses_fetch_once(make_cache: CacheMaker) -> None:
    cache = make_cache(backend=MemoryBackend())
    fetch = Counter(pause=0.1)
    results = await asyncio.gather(
        *(cache.get("patient", PARTS, fetch, deadline_seconds=1) for _ in range(100))
    )
    assert fetch.calls == 1
    assert {r.value for r in results} == {_payload()}
    assert (await cache.get("patient", PARTS, fetch, deadline_seconds=1)).source is Source.HIT


# -- several keys at once ------------------------------------------------------------------


class ReadCountingBackend:
    """A backend that counts its reads (`get_many` calls) and the keys each read."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.reads: list[int] = []

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.reads.append(len(keys))
        return await self.inner.get_many(keys)

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self.inner.put(key, value, ttl_ms)

    async def delete(self, *keys: str) -> None:
        await self.inner.delete(*keys)

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        return await self.inner.acquire(key, token, ttl_ms)

    async def release(self, key: str, token: bytes) -> None:
        await self.inner.release(key, token)

    async def close(self) -> None:
        await self.inner.close()


async def test_get_many_reads_the_store_once_for_its_hits_and_fetches_each_miss_once(
    make_cache: CacheMaker, backend_kind: str
) -> None:
    backend = ReadCountingBackend(_backend(backend_kind))
    cache = make_cache(ttls={"patient": 30.0, "episodes": 30.0}, backend=backend)
    warm = {name: Counter(name.encode()) for name in ("a", "b")}
    for name, fetch in warm.items():
        await cache.get("patient", (MUNICIPALITY, name), fetch, deadline_seconds=1)
    cold = {name: Counter(name.encode(), pause=0.05) for name in ("c", "d")}
    fetches = warm | cold
    requests = [("patient", (MUNICIPALITY, name), fetches[name]) for name in ("a", "c", "b", "d")]
    backend.reads.clear()
    # Mixed hits and misses, each miss asked by several callers at once.
    results = await asyncio.gather(
        *(cache.get_many(requests, deadline_seconds=1) for _ in range(10))
    )
    for found in results:
        assert [r.value for r in found] == [b"a", b"c", b"b", b"d"]
        assert [r.source for r in found[::2]] == [Source.HIT, Source.HIT]
    assert {r.source for found in results for r in found[1::2]} <= {Source.FETCHED, Source.HIT}
    assert [fetch.calls for fetch in fetches.values()] == [1, 1, 1, 1]
    assert backend.reads[:10] == [4] * 10  # each call's first read: its four keys at once
    backend.reads.clear()
    again = await cache.get_many(requests, deadline_seconds=1)
    assert [r.source for r in again] == [Source.HIT] * 4
    assert backend.reads == [4]
    assert [fetch.calls for fetch in fetches.values()] == [1, 1, 1, 1]


async def test_get_many_raises_a_failed_fetch_and_serves_stale_within_the_bound(
    make_cache: CacheMaker,
) -> None:
    cache = make_cache(ttls={"patient": 0.1}, stale_seconds=600)
    kept, never = Counter(b"kept"), Counter(b"never")
    await cache.get("patient", (MUNICIPALITY, "kept"), kept, deadline_seconds=1)
    await asyncio.sleep(0.15)
    kept.error = never.error = ConnectionError("EPJ down")
    stale = await cache.get_many([("patient", (MUNICIPALITY, "kept"), kept)], deadline_seconds=1)
    assert [(r.source, r.value) for r in stale] == [(Source.STALE, b"kept")]
    with pytest.raises(ConnectionError):
        await cache.get_many(
            [
                ("patient", (MUNICIPALITY, "kept"), kept),
                ("patient", (MUNICIPALITY, "never"), never),
            ],
            deadline_seconds=1,
        )
    assert never.calls == 1


async def test_peek_many_gives_fresh_values_and_never_fetches(
    make_cache: CacheMaker, backend_kind: str
) -> None:
    backend = ReadCountingBackend(_backend(backend_kind))
    cache = make_cache(ttls={"patient": 0.3, "episodes": 30.0}, backend=backend)
    fetch = Counter(b"value")
    await cache.get("patient", (MUNICIPALITY, "old"), fetch, deadline_seconds=1)
    await asyncio.sleep(0.35)
    await cache.get("patient", (MUNICIPALITY, "new"), fetch, deadline_seconds=1)
    await cache.get("episodes", (MUNICIPALITY, "new"), fetch, deadline_seconds=1)
    backend.reads.clear()
    found = await cache.peek_many(
        [
            ("patient", (MUNICIPALITY, "new")),
            ("patient", (MUNICIPALITY, "old")),  # past its fresh TTL
            ("patient", (MUNICIPALITY, "none")),
            ("episodes", (MUNICIPALITY, "new")),
        ]
    )
    assert [r.source if r is not None else None for r in found] == [
        Source.HIT,
        None,
        None,
        Source.HIT,
    ]
    assert backend.reads == [4]
    assert fetch.calls == 3


async def test_without_its_store_peek_many_finds_nothing(make_cache: CacheMaker) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = make_cache(backend=RedisBackend(Redis.from_url(f"redis://127.0.0.1:{port}/0")))
    assert await cache.peek_many([("patient", PARTS)]) == [None]


# -- what lies in Redis ---------------------------------------------------------------------


async def test_redis_holds_no_national_id_name_or_address(
    make_cache: CacheMaker, prefix: str, redis: Redis
) -> None:
    cache = make_cache()
    for person in TEST_PEOPLE:
        value = json.dumps(
            {"id": person.national_id, "name": person.name, "address": person.address}
        ).encode()

        async def fetch(value: bytes = value) -> bytes:
            return value

        await cache.get("patient", (MUNICIPALITY, person.national_id), fetch, deadline_seconds=1)
    sensitive = SensitiveData.of()
    assert sensitive.find(_payload().decode(), "the payload")  # the scan finds it in clear
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
    assert len(keys) == len(TEST_PEOPLE)
    for key in keys:
        assert re.fullmatch(rf"{re.escape(prefix)}cache:patient:[0-9a-f]{{64}}", key.decode())
        raw = await redis.get(key)
        assert isinstance(raw, bytes)
        for text in (key.decode(), raw.decode("latin-1"), raw.hex()):
            assert sensitive.find(text, "redis") == []
        for person in TEST_PEOPLE:
            assert person.national_id.encode() not in raw
            assert person.name.encode() not in raw


async def test_redis_spans_carry_no_key_or_value(
    make_cache: CacheMaker, span_exporter: InMemorySpanExporter, prefix: str
) -> None:
    client = Redis.from_url(REDIS_URL)
    RedisInstrumentor.instrument_client(client, tracer_provider=trace.get_tracer_provider())
    try:
        cache = make_cache(backend=RedisBackend(client, owned=False))
        before = len(span_exporter.get_finished_spans())
        await cache.get("patient", PARTS, Counter(), deadline_seconds=1)
        await cache.get("patient", PARTS, Counter(), deadline_seconds=1)
        spans = span_exporter.get_finished_spans()[before:]
    finally:
        RedisInstrumentor.uninstrument_client(client)
        await client.aclose()
    assert {"MGET", "SET"} <= {s.name for s in spans}
    digest = _sealer().digest("patient", PARTS)
    for span in spans:
        text = span.to_json(indent=None)
        assert digest not in text
        assert prefix not in text
        assert SensitiveData.of().find(text, span.name) == []


# -- sealing --------------------------------------------------------------------------------


async def test_a_value_moved_under_another_key_does_not_open(
    make_cache: CacheMaker, redis: Redis
) -> None:
    cache = make_cache()
    other = (MUNICIPALITY, TEST_PEOPLE[1].national_id)
    await cache.get("patient", PARTS, Counter(), deadline_seconds=1)
    raw = await redis.get(cache.key("patient", PARTS))
    assert raw is not None
    await redis.set(cache.key("patient", other), raw, px=10_000)
    fetch = Counter(b"the other one")
    moved = await cache.get("patient", other, fetch, deadline_seconds=1)
    assert moved.source is Source.FETCHED
    assert moved.value == b"the other one"
    assert (await cache.get("patient", PARTS, Counter(), deadline_seconds=1)).source is Source.HIT


async def test_a_value_sealed_under_an_old_key_is_read_while_the_key_is_in_the_ring(
    make_cache: CacheMaker,
) -> None:
    old_only = make_cache(sealer=_sealer({"old": OLD_KEY}, "old"))
    await old_only.get("patient", PARTS, Counter(), deadline_seconds=1)
    rotated = make_cache(sealer=_sealer({"new": NEW_KEY, "old": OLD_KEY}, "new"))
    kept = await rotated.get("patient", PARTS, Counter(b"refetched"), deadline_seconds=1)
    assert kept.source is Source.HIT
    assert kept.value == _payload()
    dropped = make_cache(sealer=_sealer({"new": NEW_KEY}, "new"))
    gone = await dropped.get("patient", PARTS, Counter(b"refetched"), deadline_seconds=1)
    assert gone.source is Source.FETCHED
    assert gone.value == b"refetched"


async def test_an_unreadable_value_is_logged_once_without_its_data(
    make_cache: CacheMaker, caplog: pytest.LogCaptureFixture
) -> None:
    await make_cache(sealer=_sealer({"old": OLD_KEY}, "old")).get(
        "patient", PARTS, Counter(), deadline_seconds=1
    )
    dropped = make_cache(sealer=_sealer({"new": NEW_KEY}, "new"), ttls={"patient": 0.05})
    for _ in range(3):
        await dropped.invalidate("patient", PARTS)  # the old value back each time
        await make_cache(sealer=_sealer({"old": OLD_KEY}, "old")).get(
            "patient", PARTS, Counter(), deadline_seconds=1
        )
        await dropped.get("patient", PARTS, Counter(), deadline_seconds=1)
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1
    assert "unknown key id" in lines[0]
    assert "old" in lines[0]
    assert SensitiveData.of().find(lines[0], "the log line") == []


async def test_without_its_store_the_cache_fetches_every_time(make_cache: CacheMaker) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = make_cache(backend=RedisBackend(Redis.from_url(f"redis://127.0.0.1:{port}/0")))
    fetch = Counter()
    results = [await cache.get("patient", PARTS, fetch, deadline_seconds=1) for _ in range(2)]
    assert [r.source for r in results] == [Source.FETCHED, Source.FETCHED]
    assert fetch.calls == 2


# -- settings -------------------------------------------------------------------------------


def test_keys_are_read_as_a_keyring_with_the_first_or_the_named_one_current() -> None:
    ring = parse_keyring(f"new:{NEW_KEY},old:{OLD_KEY}")
    assert (ring.current, sorted(ring.keys)) == ("new", ["new", "old"])
    assert parse_keyring(f"new:{NEW_KEY},old:{OLD_KEY}", "old").current == "old"
    assert NEW_KEY not in repr(ring)
    for bad in ("nocolon", f"a:{NEW_KEY},a:{OLD_KEY}", "a:notbase64!", "a:" + HASH_KEY[:8]):
        with pytest.raises(ValueError, match="cache key"):
            parse_keyring(bad)


def test_without_keys_a_service_outside_development_mode_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VKP_CACHE_HASH_KEY", "VKP_CACHE_KEYS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StartupError, match="VKP_CACHE_HASH_KEY"):
        cache_secrets(CacheSettings(), development=False, folder=tmp_path)
    assert not (tmp_path / "cache-keys.json").exists()


def test_development_mode_makes_its_keys_once(tmp_path: Path) -> None:
    first = cache_secrets(CacheSettings(), development=True, folder=tmp_path)
    again = cache_secrets(CacheSettings(), development=True, folder=tmp_path)
    assert (first.hash_key, dict(first.keyring.keys)) == (again.hash_key, dict(again.keyring.keys))
    assert (tmp_path / "cache-keys.json").stat().st_mode & 0o777 == 0o600


def test_keys_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "hash").write_text(HASH_KEY + "\n")
    (tmp_path / "keys").write_text(f"new:{NEW_KEY},old:{OLD_KEY}\n")
    settings = CacheSettings(hash_key_file=tmp_path / "hash", keys_file=tmp_path / "keys")
    found = cache_secrets(settings, development=False, folder=tmp_path)
    assert found.hash_key == base64.b64decode(HASH_KEY)
    assert found.keyring.current == "new"


async def test_open_cache_uses_redis_when_the_hub_has_it(
    prefix: str, tmp_path: Path, redis: Redis
) -> None:
    runtime = RuntimeSettings(redis_url=REDIS_URL, redis_key_prefix=prefix)
    settings = CacheSettings(hash_key=SecretStr(HASH_KEY), keys=SecretStr(f"old:{OLD_KEY}"))
    cache = open_cache(runtime, settings, ttls=TTLS, folder=tmp_path)
    try:
        await cache.get("patient", PARTS, Counter(), deadline_seconds=1)
    finally:
        await cache.close()
    assert await redis.exists(cache.key("patient", PARTS)) == 1
    alone = open_cache(
        RuntimeSettings(redis_key_prefix=prefix), settings, ttls=TTLS, folder=tmp_path
    )
    try:
        result = await alone.get("patient", PARTS, Counter(), deadline_seconds=1)
    finally:
        await alone.close()
    assert result.source is Source.FETCHED  # its own memory, not Redis


# -- the other process of the cross-process tests -------------------------------------------


def _env_cache(ttls: dict[str, float]) -> Cache:
    return open_cache(RuntimeSettings(), CacheSettings(), ttls=ttls, folder=Path("/nonexistent"))


async def _crowd(counter: str, start_at: float) -> None:
    """100 concurrent gets of one uncached key; the fetch counts itself in Redis."""
    cache = _env_cache(TTLS)
    redis = Redis.from_url(REDIS_URL)

    async def fetch() -> bytes:
        await redis.incr(counter)
        await asyncio.sleep(0.5)
        return _payload()

    await asyncio.sleep(max(0.0, start_at - time.time()))
    results: list[CacheResult] = await asyncio.gather(
        *(cache.get("patient", PARTS, fetch, deadline_seconds=5) for _ in range(100))
    )
    await cache.close()
    await redis.aclose()
    sources = collections.Counter(r.source.value for r in results)
    report = {
        "count": len(results),
        "sources": dict(sources),
        "values_ok": all(r.value == _payload() for r in results),
    }
    print(json.dumps(report), flush=True)


async def _holder() -> None:
    """Takes the key's lock and fetches for a long time (until it is killed)."""
    cache = _env_cache(TTLS)

    async def fetch() -> bytes:
        print("fetching", flush=True)
        await asyncio.sleep(60)
        return b""

    await cache.get("patient", PARTS, fetch, deadline_seconds=2)


def _main(args: list[str]) -> None:
    runs: dict[str, Callable[[], Coroutine[None, None, None]]] = {
        "crowd": lambda: _crowd(args[1], float(args[2])),
        "holder": _holder,
    }
    asyncio.run(runs[args[0]]())


if __name__ == "__main__":
    _main(sys.argv[1:])
