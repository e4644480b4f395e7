"""The hub's pytest plugin (`-p vkp_lib.testing.plugin`).

- Every test runs under the leak guard: log records (rendered by the real JSON formatter, at
  DEBUG), spans exported in this process (after the real redaction) and spans that service
  processes exported to the test collector during the test are searched for the synthetic test
  people's national ids in any common encoding, names and addresses; a find fails the test.
  Tests feed other text (a process's log file) with `leak_guard.scan(text, where)`.
- `span_exporter`: the spans this process exported, through the same redaction as production.
- `otel_collector`: an OTLP/gRPC collector for service processes; `collector_env` points them
  at it.
- `dev_issuer`: the development token issuer in a folder of the test run; `auth_env` is what a
  service process needs to trust it (development mode) and to share DPoP replay checks in Redis
  under `redis_prefix`, a key prefix of its own for the test run, deleted at the end.
- `postgres_url`: a PostgreSQL database of the test run on 127.0.0.1:5432, dropped at the end.
- `database_url`: each test twice, on a SQLite file of its own and on a PostgreSQL database of
  its own (dropped after the test).
- The default ports of a running hub (`make run`: 50051-50055, 8085) are watched for the whole
  run (`vkp_lib.testing.ports`): a test that connects to one fails, and so does the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from google.protobuf import text_format
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.logging import configure_structlog, json_formatter
from vkp_lib.telemetry import RedactingSpanExporter, Redactor
from vkp_lib.testing.collector import Collector
from vkp_lib.testing.ports import PortGuard
from vkp_lib.testing.sensitive import Leak, SensitiveData

_exporter = InMemorySpanExporter()
_collector: Collector | None = None
_ports: PortGuard | None = None


def pytest_configure(config: pytest.Config) -> None:
    configure_structlog()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(_exporter, Redactor())))
    trace.set_tracer_provider(provider)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _collector is not None:
        _collector.stop()


def pytest_sessionstart(session: pytest.Session) -> None:
    global _ports
    if _ports is None:  # an inner session (pytester) leaves the outer one's guard be
        _ports = PortGuard()
        _ports.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ports is not None and _ports.watched:
        _ports.stop()
        if _ports.touched:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _ports is None:
        return
    if _ports.touched:
        ports = sorted(set(_ports.touched))
        terminalreporter.write_line(
            f"FAILED: the tests connected to the default ports of a hub: {ports}", red=True
        )
    if _ports.taken:
        terminalreporter.write_line(
            f"default ports in use (a hub is running?), not watched: {_ports.taken}", yellow=True
        )


@pytest.fixture(autouse=True)
def default_ports_untouched() -> Iterator[None]:
    """Fails a test that connected to a default port of a running hub."""
    if _ports:
        _ports.poll()  # what came before this test is not its doing
    yield
    touched = _ports.poll() if _ports else []
    if touched:
        pytest.fail(
            f"connected to the default ports of a hub: {sorted(set(touched))}", pytrace=False
        )


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(json_formatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class LeakGuard:
    """Collects what a test let out of the process and what it fed in, and finds health data."""

    def __init__(self, data: SensitiveData) -> None:
        self.data = data
        self.leaks: list[Leak] = []

    def scan(self, text: str, where: str) -> None:
        self.leaks += self.data.find(text, where)


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    return _exporter


@pytest.fixture(scope="session")
def otel_collector() -> Collector:
    global _collector
    if _collector is None:
        _collector = Collector()
    return _collector


@pytest.fixture(scope="session")
def collector_env(otel_collector: Collector) -> dict[str, str]:
    """Environment that sends a service process's spans to the test collector."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otel_collector.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }


#: The Redis server of the machine the tests run on.
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test run; its keys are deleted at the end."""
    prefix = f"vkp-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def dev_issuer(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentIssuer:
    return DevelopmentIssuer.open(tmp_path_factory.mktemp("dev-issuer"))


@pytest.fixture(scope="session")
def auth_env(dev_issuer: DevelopmentIssuer, redis_prefix: str) -> dict[str, str]:
    """Environment of a service process that trusts the test run's development issuer."""
    return {**dev_issuer.env(), "VKP_REDIS_URL": REDIS_URL, "VKP_REDIS_KEY_PREFIX": redis_prefix}


@pytest.fixture(autouse=True)
def leak_guard() -> Iterator[LeakGuard]:
    guard = LeakGuard(SensitiveData.of())
    capture = _Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    spans_before = len(_exporter.get_finished_spans())
    collected_before = len(_collector.spans()) if _collector else 0
    try:
        yield guard
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    for line in capture.lines:
        guard.scan(line, "a log record")
    for span in _exporter.get_finished_spans()[spans_before:]:
        guard.scan(span.to_json(indent=None), f"span {span.name!r}")
    for collected in _collector.spans()[collected_before:] if _collector else []:
        guard.scan(
            text_format.MessageToString(collected.span, as_utf8=True),
            f"span {collected.span.name!r} of {collected.service}",
        )
    if guard.leaks:
        found = "\n  ".join(sorted({str(leak) for leak in guard.leaks}))
        pytest.fail(f"health data left the process:\n  {found}", pytrace=False)


#: The PostgreSQL server of the machine the tests run on, and a database to run CREATE DATABASE in.
POSTGRES_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
POSTGRES_ADMIN_DATABASE = "test"


def _postgres_admin(statement: str) -> None:
    """Runs one statement outside a transaction (CREATE/DROP DATABASE), on a loop of its own."""

    async def run() -> None:
        engine = create_async_engine(
            f"{POSTGRES_SERVER}/{POSTGRES_ADMIN_DATABASE}",
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
        )
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql(statement)
        finally:
            await engine.dispose()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()


def _postgres_database() -> Iterator[str]:
    name = f"vkp_test_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        _postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


#: A PostgreSQL database of its own for the `with` block (benchmarks use it too).
postgres_database = contextlib.contextmanager(_postgres_database)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test run, `postgresql+asyncpg://...`, dropped at the end."""
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        yield from _postgres_database()
