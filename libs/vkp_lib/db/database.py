"""One service's database, SQLite or PostgreSQL, behind the same four calls.

- `read()`: a session in a read-only transaction that sees one snapshot and is rolled back at the
  end. Reads have a small pool of their own and run beside the writer (SQLite in WAL mode: a
  reader is not blocked by the writer's open transaction).
- `read_sync(work)`: a hot point read: `work(connection)`, a plain function of a SQLAlchemy
  Core `Connection`, on a reader connection kept for it, without a transaction around it (each
  statement sees the latest commit: a work should be one statement). On SQLite it runs in a
  reader thread on a pysqlite connection of that thread's own, kept open (one thread hop per
  read, not several per statement, and no connection set up per read); on PostgreSQL in a
  greenlet over an autocommit connection of a pool of its own, read-only by its session
  settings (one round trip per statement, the statement prepared once per connection by the
  driver; a connection found lost is replaced and the read tried once more).
- `write(work)`: `work(session)` is queued to the database's one writer task, which takes up to
  `max_batch` queued works at a time and runs them in one transaction, each in a SAVEPOINT of
  its own (group commit). A work that raises rolls back only its own changes and its caller gets
  the exception; the others commit together. `write` returns once the COMMIT is durable; if the
  COMMIT fails, every caller of the batch gets that error. A work runs in its caller's context
  (span, request id) and must neither commit nor roll back. SQLAlchemy drops FOR UPDATE on
  SQLite: the one writer serialises writes there; PostgreSQL serialises other replicas. A batch
  holds the row locks of all its works until its COMMIT, taken in no common order, so two
  replicas' batches can deadlock: PostgreSQL then fails a statement of one of them (a
  deadlock or a serialization failure), that work's SAVEPOINT is rolled back (freeing the locks
  it took), and the work is submitted again, to a later batch — after this one has committed
  and released what the other replica waits for — up to `CONFLICT_RETRIES` times. A work must
  therefore be safe to run again: a function of the connection, not of what it did last time.
- `write_sync(work)`: the same writer, batches and guarantees for a work that is a plain
  function of a SQLAlchemy Core `Connection` (no awaits between its statements). The sync works
  of a batch run together without returning to the event loop: on SQLite in the writer's own
  thread on a connection of its own, kept open between batches (one thread hop per batch, not
  several per statement); on
  PostgreSQL in one greenlet over the writer's connection (one round trip per statement, so a
  work keeps its statements few: executemany, `unnest` of arrays, RETURNING). A batch of one
  work needs no SAVEPOINT: its failure rolls back the transaction it is alone in. The hot paths
  (ingest's registrations, audit's appends) are sync works.
- `migrate(package, version_table)`: Alembic `upgrade head` for the scripts in `package`, with a
  version table of the service's own, so services can share one PostgreSQL database.
- Every statement is traced by OpenTelemetry's SQLAlchemy instrumentation: the statement text,
  whose values are bound parameters and never in it. A failed statement's span names only the
  error type, since drivers may quote values in their messages. SQLAlchemy's errors leave the
  parameters out (`hide_parameters`), and aiosqlite's DEBUG lines, which hold them, are off.

SQLite follows SQLAlchemy's aiosqlite recipe: the driver's own transaction handling is off and
SQLAlchemy emits BEGIN: `BEGIN IMMEDIATE` on the writer's connections, plain `BEGIN` on the
readers'. The writer has two connections, used one at a time by its one task: aiosqlite's for
async works and migrations, and a pysqlite one in the writer's thread for sync works (a batch
holding both kinds commits them in two transactions, the async works' first). Each connection
runs with WAL, busy_timeout 5000 ms, synchronous FULL (a commit is on disk when `write` returns)
and foreign keys on; reader connections (the pool's and `read_sync`'s) are query-only.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
import sqlalchemy.ext.asyncio as sqlalchemy_asyncio
from alembic import command
from alembic.config import Config
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import Connection, event, func, select
from sqlalchemy.engine import URL, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vkp_lib.errors import StartupError
from vkp_lib.grouping import Batcher
from vkp_lib.logging import get_logger

T = TypeVar("T")

#: The async driver of each backend; a URL naming the backend alone gets it.
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
#: Connections kept open for reads (the writer has exactly one).
READ_POOL_SIZE = 4
#: PostgreSQL: the writer's connection is pinged before a batch after this long unused.
WRITER_PING_AFTER_SECONDS = 1.0
#: How often a work that lost a conflict with another transaction is submitted again.
CONFLICT_RETRIES = 5
#: SQLSTATEs of a transaction that lost a conflict and may simply run again: serialization
#: failure, deadlock detected.
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
SQLITE_PRAGMAS = (
    "busy_timeout = 5000",
    "journal_mode = WAL",
    "synchronous = FULL",
    "foreign_keys = ON",
)

_log = get_logger(__name__)
#: aiosqlite logs each statement with its parameter values at DEBUG.
logging.getLogger("aiosqlite").setLevel(logging.WARNING)
_tracer = trace.get_tracer(__name__)
_inside_work: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_work", default=False)


def async_url(url: str) -> URL:
    """The URL with its backend's async driver: `sqlite://` and `postgresql://` are rewritten."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StartupError("the database URL cannot be parsed") from None
    backend = parsed.get_backend_name()
    driver = DRIVERS.get(backend)
    if driver is None or parsed.drivername not in (backend, driver):
        raise StartupError(
            f"unsupported database URL {parsed.render_as_string()}: "
            f"use {' or '.join(DRIVERS.values())}"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StartupError("SQLite needs a file: sqlite+aiosqlite:///path/to/service.db")
    return parsed.set(drivername=driver)


def _without_password(url: URL) -> str:
    shown = URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    return shown.update_query_dict(dict(url.query)).render_as_string(hide_password=False)


class WriterStopped(RuntimeError):
    """The writer stopped before this write was committed."""


#: A work of `write_sync`: a plain function of the writer's connection, inside its transaction.
SyncWork = Callable[[Connection], T]


@dataclass(frozen=True)
class _Pending:
    work: Callable[[AsyncSession], Awaitable[Any]] | None
    sync_work: Callable[[Connection], Any] | None
    context: contextvars.Context
    caller_span: trace.SpanContext


class Database:
    """A service's database: reads on a pool, writes grouped by one writer task, migrations."""

    def __init__(self, url: URL, *, name: str, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.name = name
        self.dialect: str = url.get_backend_name()
        self.url: str = _without_password(url)
        self.max_batch = max_batch
        #: Transactions the writer has committed; each holds up to `max_batch` works.
        self.commits = 0
        self._database_file = Path(url.database or "") if self.dialect == "sqlite" else None
        self._write_engine, self._read_engine = _engines(url, name)
        #: SQLite: the sync works' connection (pysqlite), used only in the writer's thread.
        self._sync_writer = _SqliteSyncWriter(url) if self.dialect == "sqlite" else None
        self._thread: ThreadPoolExecutor | None = None
        #: `read_sync`'s: SQLite, its threads' connections; PostgreSQL, an autocommit pool.
        self._sync_readers = _SqliteSyncReaders(url) if self.dialect == "sqlite" else None
        self._point_engine = _point_read_engine(url, name) if self.dialect != "sqlite" else None
        self._write_sessions = async_sessionmaker(self._write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._writer: Batcher[_Pending, Any] | None = None
        self._accepting = False

    @classmethod
    def from_url(cls, url: str, *, name: str, max_batch: int = 256) -> Database:
        """`sqlite+aiosqlite:///path/file.db` or `postgresql+asyncpg://user@host:port/db`."""
        return cls(async_url(url), name=name, max_batch=max_batch)

    async def start(self) -> None:
        """Connects once (a wrong URL or an unreachable server stops the start here) and starts
        the writer."""
        if self._writer is not None:
            raise RuntimeError(f"the {self.name} database is already started")
        if self._database_file is not None:
            self._database_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self._write_engine.connect() as connection:
                await connection.execute(select(1))
        except Exception as error:
            raise StartupError(
                f"cannot open the {self.name} database at {self.url} ({type(error).__name__})"
            ) from error
        if self._sync_writer is not None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-db-writer")
        self._writer = Batcher(
            self._commit,
            max_size=self.max_batch,
            closed=WriterStopped,
            name=f"{self.name} db writer",
        )
        self._accepting = True

    async def close(self) -> None:
        """Commits the writes already queued, stops the writer and closes every connection."""
        self._accepting = False
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._thread is not None:
            assert self._sync_writer is not None
            self._thread.submit(self._sync_writer.close).result()
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._sync_writer is not None:
            self._sync_writer.engine.dispose()
        if self._sync_readers is not None:
            self._sync_readers.close()
        if self._point_engine is not None:
            await self._point_engine.dispose()
        await self._write_engine.dispose()
        await self._read_engine.dispose()

    async def ready(self) -> bool:
        """A readiness check: the database answers a query."""
        if not self._accepting:
            return False
        try:
            async with self.read() as session:
                await session.execute(select(1))
        except Exception:
            return False
        return True

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session in a read-only transaction, rolled back at the end."""
        return self._read_transaction()

    @asynccontextmanager
    async def _read_transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session:
            try:
                yield session
            finally:
                await session.rollback()

    async def read_sync(self, work: SyncWork[T]) -> T:
        """Runs `work(connection)` on a reader connection, outside any transaction (each of its
        statements sees the latest commit), and returns its value: one thread hop on SQLite,
        one round trip per statement on PostgreSQL. For hot point reads; `read()` for reads
        that need one snapshot over several statements. `work` runs in its caller's context
        (span) and must not block on anything but the database."""
        if not self._accepting:
            raise RuntimeError(f"the {self.name} database is not open")
        if self._sync_readers is not None:
            loop = asyncio.get_running_loop()
            run = contextvars.copy_context().run
            return await loop.run_in_executor(
                self._sync_readers.threads, run, self._sync_readers.run, work
            )
        assert self._point_engine is not None
        for attempt in (1, 2):
            try:
                async with self._point_engine.connect() as connection:
                    return await connection.run_sync(work)
            except DBAPIError as error:
                if attempt == 2 or not error.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Runs `work(session)` in the writer's next transaction and returns its value once that
        transaction is committed; its exception, or the COMMIT's, is raised here."""
        return await self._submit(work, None)

    async def write_sync(self, work: SyncWork[T]) -> T:
        """Runs `work(connection)` in the writer's next transaction, among the batch's other sync
        works without a return to the event loop, and returns its value once that transaction is
        committed; its exception, or the COMMIT's, is raised here. `work` runs in its caller's
        context (span), must not block on anything but the database, and must neither commit
        nor roll back."""
        return await self._submit(None, work)

    async def _submit(
        self,
        work: Callable[[AsyncSession], Awaitable[T]] | None,
        sync_work: SyncWork[T] | None,
    ) -> T:
        if not self._accepting or self._writer is None:
            raise RuntimeError(f"the {self.name} database is not open for writes")
        if _inside_work.get():
            raise RuntimeError("write() inside a work would wait for itself: use its session")
        caller_span = trace.get_current_span().get_span_context()
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                value: T = await self._writer.submit(
                    _Pending(work, sync_work, contextvars.copy_context(), caller_span)
                )
            except DBAPIError as error:
                sqlstate = _sqlstate(error)
                if attempt == CONFLICT_RETRIES or sqlstate not in CONFLICT_SQLSTATES:
                    raise
                _log.info(
                    "write lost a conflict, submitted again",
                    database=self.name,
                    sqlstate=sqlstate,
                    attempt=attempt + 1,
                )
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter
            else:
                return value
        raise AssertionError("unreachable")

    async def migrate(self, package: str, version_table: str) -> None:
        """Alembic `upgrade head` with the scripts of `package` (its folder is the script
        location) and the version table `version_table`, in one transaction on the writer's
        connection. On PostgreSQL, replicas starting together take turns (an advisory lock)."""
        config = Config()
        config.set_main_option("script_location", _script_location(package))
        config.attributes["version_table"] = version_table
        async with self._write_engine.begin() as connection:
            if self.dialect == "postgresql":
                lock = func.pg_advisory_xact_lock(_lock_key(version_table))
                await connection.execute(select(lock))
            await connection.run_sync(_upgrade, config)

    async def _commit(self, batch: list[_Pending]) -> list[Any]:
        """The writer's handling of a batch: its works in one transaction; each work's value or
        error once it is committed (the COMMIT's error, raised, fails them all)."""
        with self._batch_span(batch) as span:
            return await self._outcomes(batch, span)

    async def _outcomes(self, batch: list[_Pending], span: trace.Span) -> list[Any]:
        """Each work's value or exception once its transaction is committed: the async works'
        and the sync works' (a COMMIT's error is the outcome of each work of its transaction)."""
        async_part = [p for p in batch if p.work is not None]
        sync_part = [p for p in batch if p.sync_work is not None]
        done: dict[int, Any] = {}
        for part, run in ((async_part, self._run_batch), (sync_part, self._run_sync_batch)):
            if not part:
                continue
            try:
                outcomes = await run(part)
            except Exception as error:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__qualname__))
                _log.warning(
                    "write batch not committed",
                    database=self.name,
                    works=len(part),
                    error_type=type(error).__qualname__,
                )
                if len(part) == len(batch):
                    raise
                outcomes = [error] * len(part)
            else:
                self.commits += 1
            done.update(zip(map(id, part), outcomes, strict=True))
        return [done[id(p)] for p in batch]

    async def _run_sync_batch(self, batch: list[_Pending]) -> list[Any]:
        """The sync works of a batch in one transaction, committed, without a return to the
        event loop between them: in the writer's thread (SQLite) or in one greenlet over the
        writer's connection (PostgreSQL)."""
        if self._thread is not None:
            assert self._sync_writer is not None
            loop = asyncio.get_running_loop()
            run = contextvars.copy_context().run  # the batch span, for the statements' spans
            return await loop.run_in_executor(self._thread, run, self._sync_writer.run, batch)
        async with self._write_engine.connect() as connection:
            try:
                return await connection.run_sync(_sync_transaction, batch)
            except BaseException:
                await connection.invalidate()
                raise

    async def _run_batch(self, batch: list[_Pending]) -> list[Any]:
        """The works of a batch in one transaction, committed. A connection whose COMMIT failed
        is closed: the driver may leave its transaction open (SQLite does, after a deferred
        foreign key fails)."""
        async with self._write_sessions() as session:
            outcomes = [await _run_in_savepoint(pending, session) for pending in batch]
            try:
                await session.commit()
            except BaseException:
                await session.invalidate()
                raise
        return outcomes

    def _batch_span(self, batch: list[_Pending]) -> AbstractContextManager[trace.Span]:
        """A root span per transaction, linked to the spans of the calls whose works it holds."""
        return _tracer.start_as_current_span(
            "db write batch",
            context=otel_context.Context(),
            links=[trace.Link(p.caller_span) for p in batch if p.caller_span.is_valid],
            attributes={"db.system": self.dialect, "vkp.db.batch_size": len(batch)},
            record_exception=False,
            set_status_on_exception=False,
        )


def _sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE of a driver's error (asyncpg's, as SQLAlchemy passes it on), if it has one."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


async def _call(work: Callable[[AsyncSession], Awaitable[T]], session: AsyncSession) -> T:
    _inside_work.set(True)
    return await work(session)


def _call_sync(work: Callable[[Connection], T], connection: Connection) -> T:
    _inside_work.set(True)
    return work(connection)


def _in_savepoint(pending: _Pending, connection: Connection) -> Any:
    """Runs one sync work in a SAVEPOINT of its own and in its caller's context; its value, or
    the exception its caller gets."""
    assert pending.sync_work is not None
    try:
        with connection.begin_nested():
            return pending.context.run(_call_sync, pending.sync_work, connection)
    except Exception as error:
        return error


def _sync_transaction(connection: Connection, batch: list[_Pending]) -> list[Any]:
    """The sync works of a batch in one transaction on `connection`, committed (a COMMIT's
    error is raised). A work alone in its transaction needs no SAVEPOINT: its error rolls the
    transaction back."""
    if len(batch) > 1:
        with connection.begin():
            return [_in_savepoint(pending, connection) for pending in batch]
    (pending,) = batch
    assert pending.sync_work is not None
    transaction = connection.begin()
    try:
        value = pending.context.run(_call_sync, pending.sync_work, connection)
    except Exception as error:
        transaction.rollback()
        return [error]
    transaction.commit()
    return [value]


class _SqliteSyncWriter:
    """SQLite: the connection of the sync works, used only in the writer's thread and kept open
    from one batch to the next (checking it out of its pool and resetting it at each batch cost
    more than a small batch's statements)."""

    def __init__(self, url: URL) -> None:
        self.engine = _sqlite_sync_engine(url)
        self._connection: Connection | None = None

    def run(self, batch: list[_Pending]) -> list[Any]:
        """`_sync_transaction` on the connection; one whose COMMIT failed is closed (the driver
        may leave its transaction open) and the next batch opens another."""
        if self._connection is None:
            self._connection = self.engine.connect()
        connection = self._connection
        try:
            return _sync_transaction(connection, batch)
        except BaseException:
            self._connection = None
            connection.invalidate()
            connection.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _SqliteSyncReaders:
    """SQLite: `read_sync`'s threads, each with a pysqlite connection of its own (query-only, in
    autocommit: a statement is its own read transaction), made on the thread's first read and
    kept open until close."""

    def __init__(self, url: URL) -> None:
        self.engine = _sqlite_sync_engine(url, pool_size=READ_POOL_SIZE, reader=True)
        self.threads = ThreadPoolExecutor(READ_POOL_SIZE, thread_name_prefix="db-reader")
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()

    def run(self, work: SyncWork[T]) -> T:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self.engine.connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        try:
            value = work(connection)
            connection.rollback()  # ends SQLAlchemy's autobegin; the driver sent no BEGIN
        except BaseException:
            self._local.connection = None
            with self._lock:
                self._connections.remove(connection)
            connection.invalidate()
            connection.close()
            raise
        return value

    def close(self) -> None:
        self.threads.shutdown(wait=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self.engine.dispose()


async def _run_in_savepoint(pending: _Pending, session: AsyncSession) -> Any:
    """Runs one work in a SAVEPOINT of its own and in its caller's context; its value, or the
    exception its caller gets."""
    assert pending.work is not None
    task = asyncio.create_task(_call(pending.work, session), context=pending.context)
    try:
        async with session.begin_nested():
            return await task
    except asyncio.CancelledError as cancelled:
        writer = asyncio.current_task()
        if writer is not None and writer.cancelling():
            raise
        return cancelled
    except Exception as error:
        return error


def _script_location(package: str) -> str:
    folder = resources.files(package)
    if not isinstance(folder, Path):
        raise StartupError(f"the migrations package {package} is not a folder on disk")
    return str(folder)


def _lock_key(version_table: str) -> int:
    """The advisory lock of one version table: a signed 64-bit hash of its name."""
    digest = hashlib.sha256(f"vkp migrations {version_table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _engines(url: URL, name: str) -> tuple[AsyncEngine, AsyncEngine]:
    """The writer's engine (exactly one connection) and the readers' engine."""
    if url.get_backend_name() == "sqlite":
        writer = _engine(url, pool_size=1, max_overflow=0)
        reader = _engine(url, pool_size=READ_POOL_SIZE)
        _sqlite_transactions(writer, "BEGIN IMMEDIATE", SQLITE_PRAGMAS)
        _sqlite_transactions(reader, "BEGIN", (*SQLITE_PRAGMAS, "query_only = ON"))
        return writer, reader
    connect_args = {"server_settings": {"application_name": name}}
    writer = _engine(url, pool_size=1, max_overflow=0, connect_args=connect_args)
    _ping_when_idle(writer)
    reader = _engine(
        url,
        pool_size=READ_POOL_SIZE,
        isolation_level="REPEATABLE READ",
        execution_options={"postgresql_readonly": True},
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    return writer, reader


def _ping_when_idle(engine: AsyncEngine) -> None:
    """The writer's connection is checked (a ping, three round trips with asyncpg) when it has
    been idle for WRITER_PING_AFTER_SECONDS, not before every batch: a connection lost under
    load fails its batch, whose callers get the error, and is replaced for the next."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        now = time.monotonic()
        idle = now - record.info.get("vkp_last_checkout", now)
        record.info["vkp_last_checkout"] = now
        if idle > WRITER_PING_AFTER_SECONDS:
            try:
                dbapi_connection.ping()
            except Exception as error:
                raise DisconnectionError from error


def _sqlite_sync_engine(url: URL, *, pool_size: int = 1, reader: bool = False) -> Engine:
    """Pysqlite connections, traced like the others: the SQLite writer's for sync works (one,
    used only in the writer's thread), or `read_sync`'s (one per reader thread, query-only,
    in autocommit: no BEGIN)."""
    _instrument_sqlalchemy()
    engine = sqlalchemy.create_engine(  # looked up now: the instrumentation wraps it
        url.set(drivername="sqlite+pysqlite"),
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"check_same_thread": False},  # made in one thread, closed by close()
    )
    if reader:
        _sqlite_transactions(engine, None, (*SQLITE_PRAGMAS, "query_only = ON"))
    else:
        _sqlite_transactions(engine, "BEGIN IMMEDIATE", SQLITE_PRAGMAS)
    return engine


def _point_read_engine(url: URL, name: str) -> AsyncEngine:
    """PostgreSQL: `read_sync`'s pool: autocommit (no BEGIN and ROLLBACK around a read), its
    sessions read-only, no ping before each checkout (a lost connection fails its statement and
    `read_sync` tries once more on a new one)."""
    settings = {"application_name": name, "default_transaction_read_only": "on"}
    return _engine(
        url,
        pool_size=READ_POOL_SIZE,
        isolation_level="AUTOCOMMIT",
        connect_args={"server_settings": settings},
    )


def _engine(url: URL, **options: Any) -> AsyncEngine:
    """An engine whose statements are traced, without parameter values in spans or errors."""
    _instrument_sqlalchemy()
    return sqlalchemy_asyncio.create_async_engine(url, hide_parameters=True, **options)


def _instrument_sqlalchemy() -> None:
    """Instruments SQLAlchemy once per process: every engine made after is traced, and a failed
    statement's span, in any engine, names the error type and not the driver's message.

    The instrumentation declares SQLAlchemy < 2.1 as its range; the events it uses are the same
    in 2.1 (the tests check its spans), so the declared range is not enforced.
    """
    instrumentor = SQLAlchemyInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(enable_commenter=False, skip_dep_check=True)
    if not event.contains(Engine, "handle_error", _end_failed_statement_span):
        event.listen(Engine, "handle_error", _end_failed_statement_span)


def _end_failed_statement_span(context: ExceptionContext) -> None:
    """Ends a failed statement's span before the instrumentation does (listeners of the Engine
    class run before those of an engine), with the error's type as its status instead of the
    driver's message, which may quote a parameter value."""
    execution = context.execution_context
    span: trace.Span | None = getattr(execution, "_otel_span", None)
    if execution is None or span is None:
        return
    execution._otel_span = None  # type: ignore[attr-defined]  # the instrumentation's private attribute
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(context.original_exception).__name__))
    span.end()


def _sqlite_transactions(
    engine: AsyncEngine | Engine, begin: str | None, pragmas: tuple[str, ...]
) -> None:
    """Each connection's pragmas, the driver's own transaction handling off, and `begin` as
    SQLAlchemy's BEGIN (None: none, the connection stays in autocommit)."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    if begin is None:
        return
    statement: str = begin

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(statement)
