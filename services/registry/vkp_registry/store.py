"""The registry's storage: its resources, the change feed and idempotent creates.

Each resource is a row keyed by its name, with the columns its lists filter on and its body as
JSON. Every change bumps the one-row revision counter *in the change's own transaction*, so
revision order is commit order (the counter's row lock makes writers take turns; a serial column
would not: two writers can commit out of order and a subscriber resuming from the larger one
would skip the other). The change and the resource as it now is go into `registry_changes`,
which `WatchChanges` and every replica's access snapshot follow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from vkp_lib import paging
from vkp_lib.db import Database, aware, rowcount
from vkp_lib.errors import AlreadyExists, FailedPrecondition, NotFound
from vkp_registry.domain.model import (
    Agreement,
    Change,
    ChangeType,
    EpjEndpoint,
    Municipality,
    PartnerProfile,
    Resource,
    Vendor,
    VendorSystem,
)

MIGRATIONS = "vkp_registry.migrations"
VERSION_TABLE = "alembic_version_registry"
DEFAULT_PAGE_SIZE = 50

metadata = sa.MetaData()
revision_table = sa.Table(
    "registry_revision",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
)
changes_table = sa.Table(
    "registry_changes",
    metadata,
    sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("commit_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("change_type", sa.String(16), nullable=False),
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("resource_name", sa.String(300), nullable=False),
    sa.Column("body", sa.Text, nullable=True),
)
requests_table = sa.Table(
    "registry_requests",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
)


def _resource_table(name: str, *columns: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("name", sa.String(300), primary_key=True),
        *columns,
        sa.Column("body", sa.Text, nullable=False),
    )


municipalities_table = _resource_table(
    "registry_municipalities",
    sa.Column("municipality_number", sa.String(4), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
)
vendors_table = _resource_table("registry_vendors")
vendor_systems_table = _resource_table(
    "registry_vendor_systems", sa.Column("vendor", sa.String(40), nullable=False, index=True)
)
client_ids_table = sa.Table(
    "registry_client_ids",
    metadata,
    sa.Column("client_id", sa.String(200), primary_key=True),
    sa.Column("vendor_system", sa.String(300), nullable=False, index=True),
)
epj_endpoints_table = _resource_table("registry_epj_endpoints")
agreements_table = _resource_table(
    "registry_agreements",
    sa.Column("municipality", sa.String(9), nullable=False, index=True),
    sa.Column("vendor_system", sa.String(300), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
)
partner_profiles_table = _resource_table("registry_partner_profiles")

R = TypeVar("R", bound=Resource)
T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """How one kind of resource is stored."""

    type_name: str
    resource: type[Any]
    table: sa.Table
    columns: Callable[[Any], dict[str, Any]]
    missing: str  # the NOT_FOUND reason
    exists: str  # the ALREADY_EXISTS reason

    @property
    def adapter(self) -> TypeAdapter[Any]:
        return _ADAPTERS[self.type_name]


MUNICIPALITY = Kind(
    "municipality",
    Municipality,
    municipalities_table,
    lambda m: {"municipality_number": m.municipality_number, "state": m.state.value},
    "MUNICIPALITY_NOT_FOUND",
    "MUNICIPALITY_EXISTS",
)
VENDOR = Kind("vendor", Vendor, vendors_table, lambda v: {}, "VENDOR_NOT_FOUND", "VENDOR_EXISTS")
VENDOR_SYSTEM = Kind(
    "vendor_system",
    VendorSystem,
    vendor_systems_table,
    lambda s: {"vendor": f"vendors/{s.vendor_organization_number}"},
    "VENDOR_SYSTEM_NOT_FOUND",
    "VENDOR_SYSTEM_EXISTS",
)
EPJ_ENDPOINT = Kind(
    "epj_endpoint",
    EpjEndpoint,
    epj_endpoints_table,
    lambda e: {},
    "EPJ_ENDPOINT_NOT_FOUND",
    "EPJ_ENDPOINT_EXISTS",
)
AGREEMENT = Kind(
    "agreement",
    Agreement,
    agreements_table,
    lambda a: {
        "municipality": a.municipality,
        "vendor_system": a.vendor_system,
        "state": a.state.value,
    },
    "AGREEMENT_NOT_FOUND",
    "AGREEMENT_EXISTS",
)
PARTNER_PROFILE = Kind(
    "partner_profile",
    PartnerProfile,
    partner_profiles_table,
    lambda p: {},
    "PARTNER_PROFILE_NOT_FOUND",
    "PARTNER_PROFILE_EXISTS",
)
KINDS = {
    k.type_name: k
    for k in (MUNICIPALITY, VENDOR, VENDOR_SYSTEM, EPJ_ENDPOINT, AGREEMENT, PARTNER_PROFILE)
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(kind.resource) for name, kind in KINDS.items()
}
KIND_OF = {kind.resource: kind for kind in KINDS.values()}


def kind_of(resource: Resource) -> Kind:
    return KIND_OF[type(resource)]


def _dump(resource: Resource) -> str:
    return kind_of(resource).adapter.dump_json(resource).decode()


def _load(type_name: str, body: str) -> Any:
    return KINDS[type_name].adapter.validate_json(body)


def fingerprint(content: bytes) -> str:
    """A stable hash of a request's content, to tell a retry from a reused request id."""
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str


class RegistryStore:
    """The registry's resources and change feed in its database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.db = db
        self._clock = clock
        self.after_write: Callable[[], None] = lambda: None

    async def migrate(self) -> None:
        await self.db.migrate(MIGRATIONS, VERSION_TABLE)

    async def _write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        result = await self.db.write(work)
        self.after_write()
        return result

    # -- the change feed ---------------------------------------------------------------------

    async def _record(
        self, session: AsyncSession, change: ChangeType, name: str, kind: Kind
    ) -> tuple[int, datetime]:
        bumped = await session.execute(
            sa.update(revision_table)
            .where(revision_table.c.id == 1)
            .values(revision=revision_table.c.revision + 1)
            .returning(revision_table.c.revision)
        )
        revision, now = int(bumped.scalar_one()), self._clock()
        await session.execute(
            sa.insert(changes_table).values(
                revision=revision,
                commit_time=now,
                change_type=change.value,
                resource_type=kind.type_name,
                resource_name=name,
                body=None,
            )
        )
        return revision, now

    async def _finish_change(
        self, session: AsyncSession, revision: int, resource: Resource
    ) -> None:
        await session.execute(
            sa.update(changes_table)
            .where(changes_table.c.revision == revision)
            .values(body=_dump(resource))
        )

    async def head_revision(self) -> int:
        async with self.db.read() as session:
            found = await session.execute(sa.select(revision_table.c.revision))
            return int(found.scalar_one())

    async def changes_after(
        self, revision: int, *, up_to: int | None = None, limit: int = 500
    ) -> list[Change]:
        """The changes after `revision` (and at most `up_to`), in revision order."""
        query = sa.select(changes_table).where(changes_table.c.revision > revision)
        if up_to is not None:
            query = query.where(changes_table.c.revision <= up_to)
        async with self.db.read() as session:
            rows = await session.execute(query.order_by(changes_table.c.revision).limit(limit))
            return [
                Change(
                    revision=row.revision,
                    commit_time=aware(row.commit_time),
                    type=ChangeType(row.change_type),
                    resource_name=row.resource_name,
                    resource=_load(row.resource_type, row.body) if row.body else None,
                )
                for row in rows
            ]

    async def snapshot(self) -> tuple[int, list[Resource]]:
        """Every resource, and the revision they are current at."""
        async with self.db.read() as session:
            revision = int(
                (await session.execute(sa.select(revision_table.c.revision))).scalar_one()
            )
            resources: list[Resource] = []
            for kind in KINDS.values():
                rows = await session.execute(sa.select(kind.table.c.body))
                resources += [_load(kind.type_name, body) for (body,) in rows]
            return revision, resources

    # -- generic resource operations ---------------------------------------------------------

    async def _get_in(self, session: AsyncSession, kind: Kind, name: str) -> Any | None:
        found = await session.execute(sa.select(kind.table.c.body).where(kind.table.c.name == name))
        body = found.scalar_one_or_none()
        return _load(kind.type_name, body) if body is not None else None

    async def get(self, kind: Kind, name: str) -> Any:
        async with self.db.read() as session:
            resource = await self._get_in(session, kind, name)
        if resource is None:
            raise NotFound(kind.missing, f"{name} does not exist")
        return resource

    async def page(
        self,
        kind: Kind,
        *,
        page_size: int,
        page_token: str,
        where: Sequence[sa.ColumnElement[bool]] = (),
        filters: str = "",
    ) -> Page:
        size = page_size or DEFAULT_PAGE_SIZE
        after = paging.position(page_token, filters, lambda parts: parts[0]) or ""
        query = sa.select(kind.table.c.name, kind.table.c.body).order_by(kind.table.c.name)
        for condition in where:
            query = query.where(condition)
        if after:
            query = query.where(kind.table.c.name > after)
        async with self.db.read() as session:
            rows = list(await session.execute(query.limit(size + 1)))
        items = [_load(kind.type_name, body) for _, body in rows[:size]]
        more = len(rows) > size
        return Page(items, paging.page_token([rows[size - 1][0]], filters) if more else "")

    async def create(
        self,
        resource: R,
        *,
        request_id: str = "",
        method: str,
        request_fingerprint: str,
        check: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> R:
        kind = kind_of(resource)

        async def work(session: AsyncSession) -> R:
            if request_id:
                earlier = await session.execute(
                    sa.select(requests_table).where(requests_table.c.request_id == request_id)
                )
                row = earlier.one_or_none()
                if row is not None:
                    if (row.method, row.fingerprint) != (method, request_fingerprint):
                        raise FailedPrecondition(
                            "REQUEST_ID_REUSED", "request_id was used for another request"
                        )
                    stored: R = _load(row.resource_type, row.body)
                    return stored
            if await self._get_in(session, kind, resource.name) is not None:
                raise AlreadyExists(kind.exists, f"{resource.name} exists")
            if check is not None:
                await check(session)
            revision, now = await self._record(session, ChangeType.CREATED, resource.name, kind)
            times = {"create_time": now} if hasattr(resource, "create_time") else {}
            if hasattr(resource, "update_time"):
                times["update_time"] = now
            created: R = replace(cast(Any, resource), revision=revision, **times)
            await session.execute(
                sa.insert(kind.table).values(
                    name=created.name, body=_dump(created), **kind.columns(created)
                )
            )
            await self._finish_change(session, revision, created)
            await self._after_save(session, created)
            if request_id:
                await session.execute(
                    sa.insert(requests_table).values(
                        request_id=request_id,
                        method=method,
                        fingerprint=request_fingerprint,
                        resource_type=kind.type_name,
                        body=_dump(created),
                        create_time=now,
                    )
                )
            return created

        return await self._write(work)

    async def update(
        self,
        kind: Kind,
        name: str,
        change: Callable[[Any], Any],
        check: Callable[[AsyncSession, Any], Awaitable[None]] | None = None,
        *,
        upsert: Any = None,
    ) -> Any:
        """Applies `change` to the stored resource; with `upsert`, to that when none is stored."""

        async def work(session: AsyncSession) -> Any:
            current = await self._get_in(session, kind, name)
            if current is None and upsert is None:
                raise NotFound(kind.missing, f"{name} does not exist")
            base = current if current is not None else upsert
            changed = change(base)
            if check is not None:
                await check(session, changed)
            revision, now = await self._record(
                session,
                ChangeType.UPDATED if current is not None else ChangeType.CREATED,
                name,
                kind,
            )
            updated = replace(changed, revision=revision, update_time=now)
            if current is None:
                await session.execute(
                    sa.insert(kind.table).values(
                        name=name, body=_dump(updated), **kind.columns(updated)
                    )
                )
            else:
                await session.execute(
                    sa.update(kind.table)
                    .where(kind.table.c.name == name)
                    .values(body=_dump(updated), **kind.columns(updated))
                )
            await self._finish_change(session, revision, updated)
            await self._after_save(session, updated)
            return updated

        return await self._write(work)

    async def delete(self, kind: Kind, name: str) -> int:
        async def work(session: AsyncSession) -> int:
            deleted = await session.execute(sa.delete(kind.table).where(kind.table.c.name == name))
            if rowcount(deleted) == 0:
                raise NotFound(kind.missing, f"{name} does not exist")
            revision, _ = await self._record(session, ChangeType.DELETED, name, kind)
            return revision

        return await self._write(work)

    async def _after_save(self, session: AsyncSession, resource: Resource) -> None:
        if isinstance(resource, VendorSystem):
            await session.execute(
                sa.delete(client_ids_table).where(client_ids_table.c.vendor_system == resource.name)
            )
            await session.execute(
                sa.insert(client_ids_table),
                [{"client_id": c, "vendor_system": resource.name} for c in resource.client_ids],
            )

    # -- checks used inside writes ------------------------------------------------------------

    async def require(self, session: AsyncSession, kind: Kind, name: str) -> Any:
        resource = await self._get_in(session, kind, name)
        if resource is None:
            raise NotFound(kind.missing, f"{name} does not exist")
        return resource

    async def clients_taken(
        self, session: AsyncSession, client_ids: Sequence[str], by_other_than: str
    ) -> list[str]:
        rows = await session.execute(
            sa.select(client_ids_table.c.client_id).where(
                client_ids_table.c.client_id.in_(list(client_ids)),
                client_ids_table.c.vendor_system != by_other_than,
            )
        )
        return [client_id for (client_id,) in rows]

    async def municipality_number_taken(self, session: AsyncSession, number: str) -> bool:
        rows = await session.execute(
            sa.select(municipalities_table.c.name).where(
                municipalities_table.c.municipality_number == number
            )
        )
        return rows.first() is not None
