"""The simulator's SQLite file: resources as JSON with their search index, and the unique
index that makes conditional creates atomic.

One file in WAL mode, through the standard library's sqlite3 on threads of its own: writes run
on one thread and connection, each one `BEGIN IMMEDIATE` transaction, so a transaction bundle is
stored whole or not at all; reads run on a few connections of their own and see committed data.
A conditional create claims its key (municipality, resource type, identifier system, identifier
value) in `conditional_keys`, whose unique index is what keeps two posts of one bundle from ever
storing a resource twice, even from two processes on one file.

Seeded resources are rewritten at every start (so the visit plans are today's); received ones
(the notes) are kept until `delete_notes`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vkp_epj_sim.search import Condition, Query, Token, index_entries
from vkp_epj_sim.transaction import PlannedCreate, rewrite_references

T = TypeVar("T")
Json = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    municipality TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    seeded INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resources_by_type ON resources (type, municipality);
CREATE INDEX IF NOT EXISTS resources_received ON resources (seeded, pk);
CREATE TABLE IF NOT EXISTS search_index (
    pk INTEGER NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    name TEXT NOT NULL,
    system TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS search_index_by_value ON search_index (name, value);
CREATE INDEX IF NOT EXISTS search_index_by_pk ON search_index (pk);
CREATE TABLE IF NOT EXISTS conditional_keys (
    municipality TEXT NOT NULL,
    type TEXT NOT NULL,
    system TEXT NOT NULL,
    value TEXT NOT NULL,
    pk INTEGER NOT NULL REFERENCES resources (pk) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS conditional_key
    ON conditional_keys (municipality, type, system, value);
"""


@dataclass(frozen=True)
class Stored:
    municipality: str
    resource_type: str
    id: str
    version: int
    last_updated: str
    body: Json


@dataclass(frozen=True)
class EntryResult:
    """What one entry of a transaction did: created a resource, or found the one it names."""

    resource_type: str
    id: str
    version: int
    last_updated: str
    created: bool


class MultipleMatches(Exception):
    """An entry's ifNoneExist matches more than one resource (FHIR: 412)."""

    def __init__(self, entry: int) -> None:
        super().__init__(f"Bundle.entry[{entry}].request.ifNoneExist matches several resources")
        self.entry = entry


def now_instant() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _dumps(body: Json) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _stored(row: sqlite3.Row) -> Stored:
    return Stored(
        row["municipality"],
        row["type"],
        row["id"],
        row["version"],
        row["last_updated"],
        json.loads(row["body"]),
    )


# SQL is put together from fixed fragments and placeholders only; every value is bound. A
# parameter's values (up to search.MAX_VALUES) are bound as one JSON array read by json_each,
# so neither SQLite's expression depth (a chain of ORs) nor its number of variables bounds them.


def _token_sql(token: Token) -> tuple[str, list[str]]:
    parts, args = [], []
    if token.system is not None:
        parts.append("system = ?")
        args.append(token.system)
    if token.code is not None:
        parts.append("value = ?")
        args.append(token.code)
    return "(" + " AND ".join(parts) + ")", args


#: The resources with an index entry of a name (bound second) and any of the values (a JSON
#: array of [system or null for any, value]); CROSS JOIN keeps the values the outer loop, so each
#: is one lookup in search_index_by_value.
_ANY_VALUE = (
    "SELECT s.pk FROM json_each(?) AS t CROSS JOIN search_index AS s"
    " WHERE s.name = ? AND s.value = json_extract(t.value, '$[1]')"
    " AND s.system = coalesce(json_extract(t.value, '$[0]'), s.system)"
)
#: The resources with an index entry of a name and any of the systems (a JSON array): `system|`.
_ANY_SYSTEM = (
    "SELECT pk FROM search_index WHERE name = ? AND system IN (SELECT value FROM json_each(?))"
)


def _condition_sql(condition: Condition) -> tuple[str, list[str]]:
    if condition.kind == "id":
        ids = [t.code for t in condition.values]
        return "r.id IN (SELECT value FROM json_each(?))", [json.dumps(ids)]
    pairs = [[t.system, t.code] for t in condition.values if t.code is not None]
    systems = [t.system for t in condition.values if t.code is None]
    selects, args = [], []
    if pairs:
        selects.append(_ANY_VALUE)
        args += [json.dumps(pairs), condition.name]
    if systems:
        selects.append(_ANY_SYSTEM)
        args += [condition.name, json.dumps(systems)]
    return f"r.pk IN ({' UNION ALL '.join(selects)})", args


def _where(municipality: str | None, query: Query) -> tuple[str, list[Any]]:
    clauses, args = ["r.type = ?"], [query.resource_type]
    if municipality is not None:
        clauses.append("r.municipality = ?")
        args.append(municipality)
    for condition in query.conditions:
        sql, condition_args = _condition_sql(condition)
        clauses.append(sql)
        args += condition_args
    return " AND ".join(clauses), args


class Store:
    """Open with `await Store.open(path)`; `close` when done."""

    def __init__(self, path: Path, readers: int = 4) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="epj-sim-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="epj-sim-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(path)
        loop = asyncio.get_running_loop()
        # executescript commits on its own: it runs outside the writer's transactions.
        await loop.run_in_executor(
            store._writer, lambda: store._connection(read_only=False).executescript(_SCHEMA)
        )
        return store

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def _connection(self, read_only: bool) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            if read_only:
                connection.execute("PRAGMA query_only=ON")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _in_write_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection(read_only=False)
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    def _in_read_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection(read_only=True)
        connection.execute("BEGIN")
        try:
            return work(connection)
        finally:
            connection.execute("ROLLBACK")

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._in_write_transaction, work)
        return await loop.run_in_executor(self._writer, call)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._in_read_transaction, work)
        return await loop.run_in_executor(self._readers, call)

    # -- writing --

    @staticmethod
    def _index(connection: sqlite3.Connection, pk: int, body: Json, *, new: bool = False) -> None:
        if not new:
            connection.execute("DELETE FROM search_index WHERE pk = ?", (pk,))
        connection.executemany(
            "INSERT INTO search_index (pk, name, system, value) VALUES (?, ?, ?, ?)",
            [(pk, e.name, e.system, e.value) for e in index_entries(body)],
        )

    def _insert(
        self,
        connection: sqlite3.Connection,
        municipality: str,
        body: Json,
        last_updated: str,
        *,
        seeded: bool,
    ) -> int:
        cursor = connection.execute(
            "INSERT INTO resources (municipality, type, id, version, last_updated, seeded, body)"
            " VALUES (?, ?, ?, 1, ?, ?, ?)",
            (
                municipality,
                body["resourceType"],
                body["id"],
                last_updated,
                int(seeded),
                _dumps(body),
            ),
        )
        pk = cursor.lastrowid
        assert pk is not None
        self._index(connection, pk, body, new=True)
        return pk

    async def replace_seed(self, records: Iterable[tuple[str, Json]]) -> int:
        """Replaces every seeded resource with `records` (municipality, resource); received
        ones stay. Returns how many were stored."""
        now = now_instant()
        meta = {"versionId": "1", "lastUpdated": now}
        rows = [
            (m, {"resourceType": body["resourceType"], "id": body["id"], "meta": meta, **body})
            for m, body in records
        ]

        def work(connection: sqlite3.Connection) -> int:
            connection.execute("DELETE FROM resources WHERE seeded = 1")
            for municipality, body in rows:
                self._insert(connection, municipality, body, now, seeded=True)
            return len(rows)

        return await self._write(work)

    @staticmethod
    def _matches(
        connection: sqlite3.Connection, municipality: str, resource_type: str, token: Token
    ) -> list[sqlite3.Row]:
        token_sql, token_args = _token_sql(token)
        return connection.execute(
            "SELECT pk, id, version, last_updated FROM resources"  # noqa: S608 - only fixed fragments and ? placeholders are interpolated; values are bound
            " WHERE municipality = ? AND type = ? AND pk IN ("
            f"  SELECT pk FROM search_index WHERE name = 'identifier' AND {token_sql}"
            "  UNION SELECT pk FROM conditional_keys"
            f"  WHERE municipality = ? AND type = ? AND {token_sql})"
            " ORDER BY pk",
            [municipality, resource_type, *token_args, municipality, resource_type, *token_args],
        ).fetchall()

    def _transact(
        self, connection: sqlite3.Connection, municipality: str, creates: Sequence[PlannedCreate]
    ) -> list[EntryResult]:
        now = now_instant()
        results: list[EntryResult] = []
        targets: dict[str, str] = {}
        created: list[tuple[int, Json]] = []
        for n, create in enumerate(creates):
            found = (
                self._matches(connection, municipality, create.resource_type, create.condition)
                if create.condition
                else []
            )
            if len(found) > 1:
                raise MultipleMatches(n)
            if found:
                match = found[0]
                result = EntryResult(
                    create.resource_type,
                    match["id"],
                    match["version"],
                    match["last_updated"],
                    False,
                )
            else:
                meta = {**create.resource.get("meta", {}), "versionId": "1", "lastUpdated": now}
                body = {
                    "resourceType": create.resource_type,
                    "id": str(uuid.uuid4()),
                    "meta": meta,
                    **{k: v for k, v in create.resource.items() if k not in ("id", "meta")},
                }
                pk = self._insert(connection, municipality, body, now, seeded=False)
                if create.condition:
                    connection.execute(
                        "INSERT INTO conditional_keys (municipality, type, system, value, pk)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (
                            municipality,
                            create.resource_type,
                            create.condition.system or "",
                            create.condition.code,
                            pk,
                        ),
                    )
                created.append((pk, body))
                result = EntryResult(create.resource_type, body["id"], 1, now, True)
            results.append(result)
            if create.full_url:
                targets[create.full_url] = f"{result.resource_type}/{result.id}"
        for pk, body in created:
            rewritten = rewrite_references(body, targets)
            if rewritten != body:
                connection.execute(
                    "UPDATE resources SET body = ? WHERE pk = ?", (_dumps(rewritten), pk)
                )
                self._index(connection, pk, rewritten)
        return results

    async def transact(
        self, municipality: str, creates: Sequence[PlannedCreate]
    ) -> list[EntryResult]:
        """Stores a transaction's creates, all or none. Raises MultipleMatches."""
        try:
            return await self._write(lambda c: self._transact(c, municipality, creates))
        except sqlite3.IntegrityError:
            # Another writer on the same file claimed a key first: now it is found.
            return await self._write(lambda c: self._transact(c, municipality, creates))

    async def delete_notes(self) -> int:
        """Deletes every received resource; returns how many."""
        return await self._write(
            lambda c: c.execute("DELETE FROM resources WHERE seeded = 0").rowcount
        )

    # -- reading --

    async def read(self, municipality: str | None, resource_type: str, id: str) -> Stored | None:
        sql = "SELECT * FROM resources WHERE type = ? AND id = ?"
        args = [resource_type, id]
        if municipality is not None:
            sql += " AND municipality = ?"
            args.append(municipality)

        def work(connection: sqlite3.Connection) -> Stored | None:
            row = connection.execute(sql, args).fetchone()
            return _stored(row) if row else None

        return await self._read(work)

    async def search(self, municipality: str | None, query: Query) -> tuple[int, list[Stored]]:
        """The total that match, and the page of them the query asks for, oldest first."""
        where, args = _where(municipality, query)

        def work(connection: sqlite3.Connection) -> tuple[int, list[Stored]]:
            total = connection.execute(
                f"SELECT COUNT(*) FROM resources r WHERE {where}",  # noqa: S608 - only fixed fragments and ? placeholders are interpolated; values are bound
                args,
            ).fetchone()[0]
            if query.summary_count or query.count == 0:
                return total, []
            rows = connection.execute(
                f"SELECT r.* FROM resources r WHERE {where} ORDER BY r.pk LIMIT ? OFFSET ?",  # noqa: S608 - only fixed fragments and ? placeholders are interpolated; values are bound
                [*args, query.count, query.offset],
            ).fetchall()
            return total, [_stored(r) for r in rows]

        return await self._read(work)

    async def notes(self, limit: int = 200) -> list[Stored]:
        """The received resources, newest first."""

        def work(connection: sqlite3.Connection) -> list[Stored]:
            rows = connection.execute(
                "SELECT * FROM resources WHERE seeded = 0 ORDER BY pk DESC LIMIT ?", (limit,)
            ).fetchall()
            return [_stored(r) for r in rows]

        return await self._read(work)

    async def patients(self, ids: Iterable[str]) -> dict[str, Json]:
        """The Patients with these logical ids, by id."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)

        def work(connection: sqlite3.Connection) -> dict[str, Json]:
            rows = connection.execute(
                f"SELECT id, body FROM resources WHERE type = 'Patient' AND id IN ({marks})",  # noqa: S608 - only fixed fragments and ? placeholders are interpolated; values are bound
                wanted,
            ).fetchall()
            return {r["id"]: json.loads(r["body"]) for r in rows}

        return await self._read(work)
