"""The storage layer on SQLite and PostgreSQL: group commit, isolation, durability, migrations,
tracing without values."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    column,
    insert,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vkp_lib.db import Database, DatabaseSettings, new_id
from vkp_lib.db import database as database_module
from vkp_lib.errors import StartupError
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.plugin import postgres_database

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", Text, nullable=False, unique=True),
)
parents = Table("parents", metadata, Column("id", Integer, primary_key=True))
children = Table(
    "children",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "parent_id",
        Integer,
        ForeignKey("parents.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
)

Work = Callable[[AsyncSession], Awaitable[int]]
NATIONAL_ID = TEST_PEOPLE[0].national_id


async def create_tables(session: AsyncSession) -> None:
    connection = await session.connection()
    await connection.run_sync(metadata.create_all)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url, name="probe")
    await database.start()
    await database.write(create_tables)
    yield database
    await database.close()


def add_note(body: str) -> Work:
    async def work(session: AsyncSession) -> int:
        result = await session.execute(insert(notes).values(body=body).returning(notes.c.id))
        note_id: int = result.scalar_one()
        return note_id

    return work


async def add_orphan(session: AsyncSession) -> int:
    """A child whose parent does not exist: refused by the deferred foreign key at COMMIT."""
    await session.execute(insert(children).values(id=1, parent_id=404))
    return 1


async def fail(session: AsyncSession) -> int:
    await session.execute(insert(notes).values(body="written before the failure"))
    raise ValueError("this work fails")


async def bodies(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(notes.c.body).order_by(notes.c.id))).all())


async def read_bodies(database: Database) -> list[str]:
    async with database.read() as session:
        return await bodies(session)


@asynccontextmanager
async def writer_held(database: Database) -> AsyncIterator[None]:
    """Keeps the writer busy with a waiting work, so that the writes queued meanwhile form its
    next batch; the held work commits alone when the block ends."""
    started, release = asyncio.Event(), asyncio.Event()

    async def wait(session: AsyncSession) -> None:
        started.set()
        await release.wait()

    held = asyncio.create_task(database.write(wait))
    await started.wait()
    try:
        yield
    finally:
        release.set()
        await held


async def queued(database: Database, works: list[Work]) -> list[asyncio.Task[int]]:
    """Each work's `write` in a task of its own, already in the writer's queue."""
    tasks = [asyncio.create_task(database.write(work)) for work in works]
    await asyncio.sleep(0)
    return tasks


async def test_a_write_returns_its_work_value_and_a_later_read_sees_it(db: Database) -> None:
    note_id = await db.write(add_note("first"))
    async with db.read() as session:
        body = await session.scalar(select(notes.c.body).where(notes.c.id == note_id))
    assert body == "first"


async def test_concurrent_writes_are_committed_in_fewer_transactions_than_calls(
    db: Database,
) -> None:
    before = db.commits
    ids = await asyncio.gather(*(db.write(add_note(f"note {i}")) for i in range(200)))
    transactions = db.commits - before
    assert 1 <= transactions < 200
    assert len(set(ids)) == 200
    assert sorted(await read_bodies(db)) == sorted(f"note {i}" for i in range(200))


async def test_a_batch_holds_at_most_max_batch_works(database_url: str) -> None:
    database = Database.from_url(database_url, name="probe", max_batch=16)
    await database.start()
    try:
        await database.write(create_tables)
        before = database.commits
        async with writer_held(database):
            tasks = await queued(database, [add_note(f"note {i}") for i in range(64)])
        await asyncio.gather(*tasks)
        assert database.commits - before == 1 + 64 // 16
    finally:
        await database.close()


async def test_a_failing_work_fails_only_its_caller_and_the_rest_of_its_batch_commits(
    db: Database,
) -> None:
    before = db.commits
    async with writer_held(db):
        tasks = await queued(db, [add_note("a"), add_note("a"), fail, add_note("b")])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], int)
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[2], ValueError)
    assert isinstance(results[3], int)
    assert db.commits - before == 2
    assert await read_bodies(db) == ["a", "b"]


async def test_a_failed_commit_fails_every_caller_of_its_batch(db: Database) -> None:
    before = db.commits
    async with writer_held(db):
        tasks = await queued(db, [add_note("lost with the batch"), add_orphan])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results] == [IntegrityError, IntegrityError]
    assert db.commits - before == 1
    assert await read_bodies(db) == []
    await db.write(add_note("the writer goes on"))
    assert await read_bodies(db) == ["the writer goes on"]


async def test_a_failed_commit_marks_its_batch_span_with_the_error_type_only(
    db: Database, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    with pytest.raises(IntegrityError) as caught:
        await db.write(add_orphan)
    (batch,) = [s for s in span_exporter.get_finished_spans() if s.name == "db write batch"]
    assert batch.status.status_code is trace.StatusCode.ERROR
    assert batch.status.description == type(caught.value).__qualname__


async def test_a_write_from_inside_a_work_is_refused_instead_of_waiting_for_itself(
    db: Database,
) -> None:
    async def nested(session: AsyncSession) -> int:
        return await db.write(add_note("inner"))

    with pytest.raises(RuntimeError, match="wait for itself"):
        await db.write(nested)
    await db.write(add_note("after"))
    assert await read_bodies(db) == ["after"]


async def test_a_caller_cancelled_before_its_work_ran_leaves_the_writer_working(
    db: Database,
) -> None:
    async with writer_held(db):
        (cancelled,) = await queued(db, [add_note("cancelled")])
        cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await db.write(add_note("after"))
    assert await read_bodies(db) == ["after"]


async def test_a_caller_cancelled_while_its_work_runs_leaves_the_writer_working(
    db: Database,
) -> None:
    running, release = asyncio.Event(), asyncio.Event()

    async def slow(session: AsyncSession) -> int:
        running.set()
        await release.wait()
        return await add_note("committed without its caller")(session)

    caller = asyncio.create_task(db.write(slow))
    await running.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    await db.write(add_note("after"))
    assert await read_bodies(db) == ["committed without its caller", "after"]


async def test_close_commits_the_writes_already_queued(database_url: str) -> None:
    database = Database.from_url(database_url, name="probe")
    await database.start()
    await database.write(create_tables)
    tasks = await queued(database, [add_note(f"note {i}") for i in range(10)])
    await database.close()
    assert len(await asyncio.gather(*tasks)) == 10
    with pytest.raises(RuntimeError, match="not open for writes"):
        await database.write(add_note("too late"))
    reopened = Database.from_url(database_url, name="probe")
    await reopened.start()
    try:
        assert len(await read_bodies(reopened)) == 10
    finally:
        await reopened.close()


async def test_a_write_is_durable_across_a_restart(database_url: str) -> None:
    first = Database.from_url(database_url, name="probe")
    await first.start()
    await first.write(create_tables)
    await first.write(add_note("kept"))
    await first.close()
    second = Database.from_url(database_url, name="probe")
    await second.start()
    try:
        assert await read_bodies(second) == ["kept"]
    finally:
        await second.close()


#: What every SQLite connection of a Database runs with (query_only says which kind it is).
SQLITE_PRAGMAS = {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 5000, "foreign_keys": 1}
PRAGMA_NAMES = (*SQLITE_PRAGMAS, "query_only")


def pragmas(connection: Connection) -> dict[str, Any]:
    """The connection's SQLite pragmas that a Database sets."""
    return {name: connection.scalar(text(f"PRAGMA {name}")) for name in PRAGMA_NAMES}


async def on_a_new_sqlite_file(
    tmp_path: Path, run: Callable[[Database], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """`run` on a started Database of a new SQLite file, closed after."""
    database = Database.from_url(f"sqlite:///{tmp_path / 'probe.db'}", name="probe")
    await database.start()
    try:
        return await run(database)
    finally:
        await database.close()


async def test_sqlite_pragmas_are_in_effect_on_the_writer_and_the_readers(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'probe.db'}", name="probe")
    await database.start()

    async def session_pragmas(session: AsyncSession) -> dict[str, object]:
        return {name: await session.scalar(text(f"PRAGMA {name}")) for name in PRAGMA_NAMES}

    try:
        writer = await database.write(session_pragmas)
        async with database.read() as session:
            reader = await session_pragmas(session)
    finally:
        await database.close()
    assert writer == {**SQLITE_PRAGMAS, "query_only": 0}
    assert reader == {**SQLITE_PRAGMAS, "query_only": 1}


async def test_a_write_inside_a_read_is_refused(db: Database) -> None:
    async with db.read() as session:
        with pytest.raises(DBAPIError):
            await session.execute(insert(notes).values(body="not here"))
    assert await read_bodies(db) == []


async def during_a_write(
    db: Database, read: Callable[[], Awaitable[list[str]]]
) -> tuple[list[str], int]:
    """What `read` gives while a write of the note "in progress" holds its transaction open (in
    3 seconds: not blocked by it); and that note's id, once the write has committed."""
    inserted, release = asyncio.Event(), asyncio.Event()

    async def slow(session: AsyncSession) -> int:
        note_id = await add_note("in progress")(session)
        inserted.set()
        await release.wait()
        return note_id

    writing = asyncio.create_task(db.write(slow))
    await inserted.wait()
    try:
        async with asyncio.timeout(3):
            seen = await read()
    finally:
        release.set()
    return seen, await writing


async def test_a_read_is_not_blocked_by_a_write_in_progress(db: Database) -> None:
    seen_during, _ = await during_a_write(db, lambda: read_bodies(db))
    assert seen_during == []
    assert await read_bodies(db) == ["in progress"]


async def test_a_write_commits_while_a_read_is_open_and_the_read_keeps_its_snapshot(
    db: Database,
) -> None:
    await db.write(add_note("before"))
    async with db.read() as session:
        first_look = await bodies(session)
        await db.write(add_note("during"))
        second_look = await bodies(session)
    assert first_look == second_look == ["before"]
    assert await read_bodies(db) == ["before", "during"]


@pytest.fixture
def migrations(monkeypatch: pytest.MonkeyPatch) -> str:
    """The parent package of the test migrations, importable for the test."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return "db_migrations"


async def versions(database: Database, version_table: str) -> list[str]:
    async with database.read() as session:
        query = select(column("version_num", Text)).select_from(table(version_table))
        return list((await session.scalars(query)).all())


async def tables(database: Database) -> set[str]:
    async with database.read() as session:
        connection = await session.connection()
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


@pytest.fixture
async def empty(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url, name="probe")
    await database.start()
    yield database
    await database.close()


async def test_migrate_creates_the_tables_and_records_the_revision_in_its_version_table(
    empty: Database, migrations: str
) -> None:
    await empty.migrate(f"{migrations}.first", "first_version")
    assert await tables(empty) == {"probe_notes", "first_version"}
    assert await versions(empty, "first_version") == ["first_0001"]


async def test_migrate_run_again_changes_nothing(empty: Database, migrations: str) -> None:
    await empty.migrate(f"{migrations}.first", "first_version")
    await empty.migrate(f"{migrations}.first", "first_version")
    assert await tables(empty) == {"probe_notes", "first_version"}
    assert await versions(empty, "first_version") == ["first_0001"]


async def test_two_services_migrations_share_a_database_with_their_own_version_tables(
    empty: Database, migrations: str
) -> None:
    await empty.migrate(f"{migrations}.first", "first_version")
    await empty.migrate(f"{migrations}.second", "second_version")
    assert await tables(empty) == {"probe_notes", "first_version", "probe_tags", "second_version"}
    assert await versions(empty, "first_version") == ["first_0001"]
    assert await versions(empty, "second_version") == ["second_0001"]


async def test_replicas_migrating_at_once_apply_each_revision_once(
    database_url: str, migrations: str
) -> None:
    replicas = [Database.from_url(database_url, name=f"replica-{i}") for i in range(2)]
    for replica in replicas:
        await replica.start()
    try:
        await asyncio.gather(*(r.migrate(f"{migrations}.first", "first_version") for r in replicas))
        assert await versions(replicas[0], "first_version") == ["first_0001"]
    finally:
        for replica in replicas:
            await replica.close()


def statement_spans(exporter: InMemorySpanExporter, table: str) -> list[ReadableSpan]:
    return [
        span
        for span in exporter.get_finished_spans()
        if f"INSERT INTO {table}" in str((span.attributes or {}).get("db.statement", ""))
    ]


async def test_statement_spans_carry_the_statement_with_placeholders_and_no_values(
    db: Database, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    await db.write(add_note(NATIONAL_ID))
    (span,) = statement_spans(span_exporter, "notes")
    statement = str((span.attributes or {})["db.statement"])
    assert "?" in statement or "$1" in statement
    assert all(NATIONAL_ID not in s.to_json() for s in span_exporter.get_finished_spans())


async def test_a_failed_statement_span_names_only_the_error_type(
    db: Database, span_exporter: InMemorySpanExporter
) -> None:
    await db.write(add_note(NATIONAL_ID))
    span_exporter.clear()
    with pytest.raises(IntegrityError) as caught:
        await db.write(add_note(NATIONAL_ID))
    (span,) = statement_spans(span_exporter, "notes")
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == type(caught.value.orig).__name__


async def test_a_driver_message_quoting_a_value_stays_out_of_the_spans(
    postgres_url: str, span_exporter: InMemorySpanExporter
) -> None:
    database = Database.from_url(postgres_url, name="probe")
    await database.start()
    span_exporter.clear()
    try:
        async with database.read() as session:
            with pytest.raises(DBAPIError) as caught:
                await session.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": NATIONAL_ID})
    finally:
        await database.close()
    assert NATIONAL_ID in str(caught.value.orig)
    spans = span_exporter.get_finished_spans()
    assert any(s.status.status_code is trace.StatusCode.ERROR for s in spans)
    assert all(NATIONAL_ID not in s.to_json() for s in spans)


async def test_a_work_runs_in_its_callers_trace_and_its_batch_span_links_the_call(
    db: Database, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    with trace.get_tracer(__name__).start_as_current_span("rpc") as rpc:
        await db.write(add_note("traced"))
    (statement,) = statement_spans(span_exporter, "notes")
    assert statement.parent is not None
    assert statement.parent.span_id == rpc.get_span_context().span_id
    (batch,) = [s for s in span_exporter.get_finished_spans() if s.name == "db write batch"]
    assert batch.parent is None
    assert [link.context.span_id for link in batch.links] == [rpc.get_span_context().span_id]
    assert (batch.attributes or {})["vkp.db.batch_size"] == 1


async def test_ready_only_while_open(database_url: str) -> None:
    database = Database.from_url(database_url, name="probe")
    assert not await database.ready()
    await database.start()
    assert await database.ready()
    await database.close()
    assert not await database.ready()


async def test_a_server_that_cannot_be_reached_stops_the_start() -> None:
    database = Database.from_url("postgresql://postgres:secret@127.0.0.1:1/none", name="probe")
    with pytest.raises(StartupError, match=r"postgresql\+asyncpg://postgres@127.0.0.1:1/none"):
        await database.start()
    await database.close()


def test_plain_urls_get_the_async_drivers_and_the_url_shown_has_no_password() -> None:
    postgres = Database.from_url("postgresql://vkp:secret@db.local:5433/hub", name="probe")
    sqlite = Database.from_url("sqlite:///var/probe.db", name="probe")
    assert (postgres.dialect, postgres.url) == (
        "postgresql",
        "postgresql+asyncpg://vkp@db.local:5433/hub",
    )
    assert (sqlite.dialect, sqlite.url) == ("sqlite", "sqlite+aiosqlite:///var/probe.db")


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/hub", "postgresql+psycopg://x@h/db", "sqlite://", "nonsense"]
)
def test_a_url_of_another_database_or_driver_is_refused(url: str) -> None:
    with pytest.raises(StartupError):
        Database.from_url(url, name="probe")


def test_without_a_url_each_service_gets_a_sqlite_file_under_the_data_dir(tmp_path: Path) -> None:
    settings = DatabaseSettings(data_dir=tmp_path / "data")
    url = settings.url_for("ingest")
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'ingest.db'}"
    assert (tmp_path / "data").is_dir()


def test_settings_come_from_vkp_db_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKP_DB_URL", "postgresql://vkp@db.local/hub")
    monkeypatch.setenv("VKP_DB_MIGRATE_ON_START", "false")
    settings = DatabaseSettings()
    assert settings.url_for("ingest") == "postgresql://vkp@db.local/hub"
    assert settings.migrate_on_start is False
    assert "db.local" not in repr(settings)


# -- sync works (write_sync): the same writer, its works run without a return to the loop ------


def add_note_sync(body: str) -> Callable[[Connection], int]:
    def work(connection: Connection) -> int:
        result = connection.execute(insert(notes).values(body=body).returning(notes.c.id))
        note_id: int = result.scalar_one()
        return note_id

    return work


def fail_sync(connection: Connection) -> int:
    connection.execute(insert(notes).values(body="written before the failure"))
    raise ValueError("this work fails")


def add_orphan_sync(connection: Connection) -> int:
    connection.execute(insert(children).values(id=1, parent_id=404))
    return 1


async def queued_sync(
    database: Database, works: list[Callable[[Connection], int]]
) -> list[asyncio.Task[int]]:
    tasks = [asyncio.create_task(database.write_sync(work)) for work in works]
    await asyncio.sleep(0)
    return tasks


async def test_a_sync_write_returns_its_work_value_and_a_later_read_sees_it(db: Database) -> None:
    note_id = await db.write_sync(add_note_sync("first"))
    async with db.read() as session:
        body = await session.scalar(select(notes.c.body).where(notes.c.id == note_id))
    assert body == "first"


async def test_concurrent_sync_writes_share_transactions(db: Database) -> None:
    before = db.commits
    ids = await asyncio.gather(*(db.write_sync(add_note_sync(f"note {i}")) for i in range(200)))
    assert 1 <= db.commits - before < 200
    assert len(set(ids)) == 200
    assert sorted(await read_bodies(db)) == sorted(f"note {i}" for i in range(200))


async def test_a_failing_sync_work_fails_only_its_caller_and_the_rest_of_its_batch_commits(
    db: Database,
) -> None:
    async with writer_held(db):
        tasks = await queued_sync(
            db, [add_note_sync("a"), add_note_sync("a"), fail_sync, add_note_sync("b")]
        )
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], int)
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[2], ValueError)
    assert isinstance(results[3], int)
    assert await read_bodies(db) == ["a", "b"]


async def test_a_failing_sync_work_alone_in_its_batch_leaves_nothing_written(db: Database) -> None:
    before = db.commits
    with pytest.raises(ValueError, match="this work fails"):
        await db.write_sync(fail_sync)
    assert db.commits - before == 1
    assert await read_bodies(db) == []
    await db.write_sync(add_note_sync("after"))
    assert await read_bodies(db) == ["after"]


async def test_a_failed_commit_of_sync_works_fails_every_caller_and_the_writer_goes_on(
    db: Database,
) -> None:
    async with writer_held(db):
        tasks = await queued_sync(db, [add_note_sync("lost with the batch"), add_orphan_sync])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results] == [IntegrityError, IntegrityError]
    assert await read_bodies(db) == []
    await db.write_sync(add_note_sync("the writer goes on"))
    assert await read_bodies(db) == ["the writer goes on"]


async def test_a_batch_of_async_and_sync_works_commits_both(db: Database) -> None:
    async with writer_held(db):
        tasks = await queued(db, [add_note("async")])
        tasks += await queued_sync(db, [add_note_sync("sync")])
    await asyncio.gather(*tasks)
    assert sorted(await read_bodies(db)) == ["async", "sync"]


async def test_a_sync_write_is_durable_across_a_restart(database_url: str) -> None:
    first = Database.from_url(database_url, name="probe")
    await first.start()
    await first.write(create_tables)
    await first.write_sync(add_note_sync("kept"))
    await first.close()
    second = Database.from_url(database_url, name="probe")
    await second.start()
    try:
        assert await read_bodies(second) == ["kept"]
    finally:
        await second.close()


async def test_sqlite_pragmas_are_in_effect_on_the_sync_writer(tmp_path: Path) -> None:
    writer = await on_a_new_sqlite_file(tmp_path, lambda database: database.write_sync(pragmas))
    assert writer == {**SQLITE_PRAGMAS, "query_only": 0}


async def test_a_sync_work_runs_in_its_callers_trace_and_its_batch_span_links_the_call(
    db: Database, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    with trace.get_tracer(__name__).start_as_current_span("rpc") as rpc:
        await db.write_sync(add_note_sync(NATIONAL_ID))
    (statement,) = statement_spans(span_exporter, "notes")
    assert statement.parent is not None
    assert statement.parent.span_id == rpc.get_span_context().span_id
    (batch,) = [s for s in span_exporter.get_finished_spans() if s.name == "db write batch"]
    assert [link.context.span_id for link in batch.links] == [rpc.get_span_context().span_id]
    assert all(NATIONAL_ID not in s.to_json() for s in span_exporter.get_finished_spans())


@pytest.fixture
def own_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own."""
    with postgres_database() as url:
        yield url


async def test_a_postgres_writer_whose_connection_was_lost_while_idle_writes_on(
    own_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "WRITER_PING_AFTER_SECONDS", 0.1)
    name = f"probe-{uuid.uuid4().hex[:8]}"
    database = Database.from_url(own_postgres_url, name=name)
    await database.start()
    try:
        await database.write(create_tables)
        await database.write_sync(add_note_sync("before"))
        other = Database.from_url(own_postgres_url, name="killer")
        await other.start()
        try:
            await other.write(
                lambda s: s.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :n"
                    ),
                    {"n": name},
                )
            )
        finally:
            await other.close()
        await asyncio.sleep(0.2)
        await database.write_sync(add_note_sync("after"))
        await database.write(add_note("and the async kind"))
        assert await read_bodies(database) == ["before", "after", "and the async kind"]
    finally:
        await database.close()


def test_new_ids_are_uuids_of_version_7_that_begin_with_their_time() -> None:
    before = time.time_ns() // 1_000_000
    made = [new_id() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in made]
    assert len(set(made)) == 1000
    assert all(str(u) == i for u, i in zip(parsed, made, strict=True))
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert all(before <= u.int >> 80 <= after for u in parsed)


# -- read_sync: hot point reads ---------------------------------------------------------------


def body_of(note_id: int) -> Callable[[Connection], str | None]:
    def work(connection: Connection) -> str | None:
        body: str | None = connection.scalar(select(notes.c.body).where(notes.c.id == note_id))
        return body

    return work


async def test_a_point_read_sees_each_committed_write_and_nothing_uncommitted(
    db: Database,
) -> None:
    first = await db.write_sync(add_note_sync("first"))
    assert await db.read_sync(body_of(first)) == "first"
    during, second = await during_a_write(
        db, lambda: db.read_sync(lambda c: list(c.scalars(select(notes.c.body))))
    )
    assert during == ["first"]
    assert await db.read_sync(body_of(second)) == "in progress"


async def test_concurrent_point_reads_each_get_their_own_value(db: Database) -> None:
    ids = [await db.write_sync(add_note_sync(f"note {i}")) for i in range(20)]
    bodies = await asyncio.gather(*(db.read_sync(body_of(i)) for i in ids * 5))
    assert bodies == [f"note {i}" for i in range(20)] * 5


async def test_a_write_in_a_point_read_is_refused_and_the_next_read_works(db: Database) -> None:
    with pytest.raises(DBAPIError):
        await db.read_sync(lambda c: c.execute(insert(notes).values(body="not here")))
    assert await db.read_sync(lambda c: list(c.scalars(select(notes.c.body)))) == []


async def test_sqlite_pragmas_are_in_effect_on_the_point_readers(tmp_path: Path) -> None:
    reader = await on_a_new_sqlite_file(tmp_path, lambda database: database.read_sync(pragmas))
    assert reader == {**SQLITE_PRAGMAS, "query_only": 1}


async def test_a_point_read_runs_in_its_callers_trace_without_values(
    db: Database, span_exporter: InMemorySpanExporter
) -> None:
    note_id = await db.write_sync(add_note_sync(NATIONAL_ID))
    span_exporter.clear()
    with trace.get_tracer(__name__).start_as_current_span("rpc") as rpc:
        assert (
            await db.read_sync(
                lambda c: c.scalar(select(notes.c.id).where(notes.c.body == NATIONAL_ID))
            )
            == note_id
        )
    (statement,) = [
        s
        for s in span_exporter.get_finished_spans()
        if "FROM notes" in str((s.attributes or {}).get("db.statement", ""))
    ]
    assert statement.parent is not None
    assert statement.parent.span_id == rpc.get_span_context().span_id
    assert all(NATIONAL_ID not in s.to_json() for s in span_exporter.get_finished_spans())


async def test_a_point_read_is_refused_once_the_database_is_closed(database_url: str) -> None:
    database = Database.from_url(database_url, name="probe")
    await database.start()
    await database.close()
    with pytest.raises(RuntimeError):
        await database.read_sync(lambda c: c.scalar(select(1)))


async def test_a_postgres_point_read_whose_connection_was_lost_reads_on(
    own_postgres_url: str,
) -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    database = Database.from_url(own_postgres_url, name=name)
    await database.start()
    try:
        await database.write(create_tables)
        note_id = await database.write_sync(add_note_sync("kept"))
        assert await database.read_sync(body_of(note_id)) == "kept"
        terminated = await database.write(
            lambda s: s.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :n AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                ),
                {"n": name},
            )
        )
        assert terminated >= 1
        await asyncio.sleep(0.2)
        assert await database.read_sync(body_of(note_id)) == "kept"
    finally:
        await database.close()


# -- conflicts between replicas -----------------------------------------------------------------


def lock_note(note_id: int) -> Callable[[Connection], int]:
    def work(connection: Connection) -> int:
        locked: int = connection.execute(
            select(notes.c.id).where(notes.c.id == note_id).with_for_update()
        ).scalar_one()
        return locked

    return work


async def test_a_work_that_loses_a_deadlock_to_another_replica_is_run_again_after_its_batch(
    own_postgres_url: str,
) -> None:
    """Two replicas' transactions lock the same rows in opposite orders: this database's batch
    holds note A (its first work) and waits for B, the other holds B and waits for A. PostgreSQL
    fails the statement that waited first (ours): that work is run again in a later batch, once
    this batch has committed and the other transaction could finish, so its caller gets its
    value, not the deadlock."""
    database = Database.from_url(own_postgres_url, name="probe")
    other = Database.from_url(own_postgres_url, name="other-replica")
    await database.start()
    await other.start()
    try:
        await database.write(create_tables)
        a = await database.write_sync(add_note_sync("A"))
        b = await database.write_sync(add_note_sync("B"))

        async def the_other_replica(session: AsyncSession) -> None:
            lock = text("SELECT id FROM notes WHERE id = :id FOR UPDATE")
            await session.execute(lock, {"id": b})
            await asyncio.sleep(0.3)  # our batch holds A and waits for B by now
            await session.execute(lock, {"id": a})

        holder = asyncio.create_task(other.write(the_other_replica))
        await asyncio.sleep(0.1)  # B is the other's
        # One batch (both queued before the writer runs): A locked, then B waited for.
        first, second = await asyncio.gather(
            database.write_sync(lock_note(a)), database.write_sync(lock_note(b))
        )
        await holder  # the other replica's transaction committed too
        assert (first, second) == (a, b)
    finally:
        await other.close()
        await database.close()
