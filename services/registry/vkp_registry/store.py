"""The registry's storage: its resources, the change feed, idempotent creates and the lists'
filters. The only place with SQL (the tables are in `tables`).

Every change bumps the one-row revision counter *in the change's own transaction*, so revision
order is commit order (the counter's row lock makes writers take turns; a serial column would
not: two writers can commit out of order and a subscriber resuming from the larger one would
skip the other). The change and the resource as it now is go into `registry_changes`, which
`WatchChanges` and every replica's access snapshot follow.

A write's checks run inside its transaction and read through `TransactionReads`, so what they
check still holds when the write commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from vkp_lib import names, paging
from vkp_lib.db import Database, aware, rowcount
from vkp_registry.domain import rules
from vkp_registry.domain.model import (
    Agreement,
    AgreementState,
    Change,
    ChangeType,
    Municipality,
    MunicipalityState,
    Named,
    Page,
    PageRequest,
    R,
    RequestKey,
    Resource,
    Vendor,
    VendorSystem,
)
from vkp_registry.tables import (
    KINDS,
    Kind,
    agreements_table,
    changes_table,
    client_ids_table,
    kind_of,
    metadata,
    municipalities_table,
    requests_table,
    revision_table,
    vendor_systems_table,
)

__all__ = ["RegistryStore", "TransactionCheck", "TransactionReads", "metadata"]

MIGRATIONS = "vkp_registry.migrations"
VERSION_TABLE = "alembic_version_registry"
DEFAULT_PAGE_SIZE = 50

T = TypeVar("T")


class TransactionReads:
    """What a write's check may read, inside the write's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find(self, kind: type[R], name: str) -> R | None:
        return await _find(self._session, kind_of(kind), name)

    async def client_ids_taken(self, client_ids: Sequence[str], *, by_other_than: str) -> list[str]:
        """Those of `client_ids` that belong to a system other than `by_other_than`."""
        rows = await self._session.execute(
            sa.select(client_ids_table.c.client_id).where(
                client_ids_table.c.client_id.in_(list(client_ids)),
                client_ids_table.c.vendor_system != by_other_than,
            )
        )
        return [client_id for (client_id,) in rows]

    async def municipality_number_taken(self, number: str) -> bool:
        rows = await self._session.execute(
            sa.select(municipalities_table.c.name).where(
                municipalities_table.c.municipality_number == number
            )
        )
        return rows.first() is not None


#: A check a write makes in its transaction; it raises to refuse the write.
TransactionCheck = Callable[[TransactionReads], Awaitable[None]]


async def _find(session: AsyncSession, kind: Kind, name: str) -> Any | None:
    found = await session.execute(sa.select(kind.table.c.body).where(kind.table.c.name == name))
    body = found.scalar_one_or_none()
    return kind.load(body) if body is not None else None


def _stamped(resource: R, revision: int, now: datetime, *, created: bool) -> R:
    times = {"create_time": now} if created and hasattr(resource, "create_time") else {}
    if hasattr(resource, "update_time"):
        times["update_time"] = now
    stamped: R = replace(cast(Any, resource), revision=revision, **times)
    return stamped


class RegistryStore:
    """The registry's resources and change feed in its database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.db = db
        self._clock = clock

    async def migrate(self) -> None:
        await self.db.migrate(MIGRATIONS, VERSION_TABLE)

    # -- the change feed ---------------------------------------------------------------------

    async def _bump(self, session: AsyncSession) -> tuple[int, datetime]:
        """The next revision, taken in the write's transaction, and the time of the change."""
        bumped = await session.execute(
            sa.update(revision_table)
            .where(revision_table.c.id == 1)
            .values(revision=revision_table.c.revision + 1)
            .returning(revision_table.c.revision)
        )
        return int(bumped.scalar_one()), self._clock()

    async def _record(
        self,
        session: AsyncSession,
        revision: int,
        now: datetime,
        change: ChangeType,
        kind: Kind,
        name: str,
        body: str | None,
    ) -> None:
        """The change of `revision`, with the resource as it now is (None when deleted)."""
        await session.execute(
            sa.insert(changes_table).values(
                revision=revision,
                commit_time=now,
                change_type=change.value,
                resource_type=kind.type_name,
                resource_name=name,
                body=body,
            )
        )

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
                    resource=KINDS[row.resource_type].load(row.body) if row.body else None,
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
                resources += [kind.load(body) for (body,) in rows]
            return revision, resources

    # -- resources ---------------------------------------------------------------------------

    async def find(self, kind: type[R], name: str) -> R | None:
        async with self.db.read() as session:
            found: R | None = await _find(session, kind_of(kind), name)
            return found

    async def create(
        self,
        resource: R,
        *,
        request: RequestKey | None = None,
        check: TransactionCheck | None = None,
    ) -> R:
        """Stores a new resource, unless `request` names one already created (its first answer
        again). Refused when the name is taken, or by `check`."""
        kind = kind_of(type(resource))

        async def work(session: AsyncSession) -> R:
            if request is not None:
                earlier = await session.execute(
                    sa.select(requests_table).where(
                        requests_table.c.request_id == request.request_id
                    )
                )
                row = earlier.one_or_none()
                if row is not None:
                    rules.check_same_request(
                        RequestKey(row.request_id, row.method, row.fingerprint), request
                    )
                    stored: R = KINDS[row.resource_type].load(row.body)
                    return stored
            if await _find(session, kind, resource.name) is not None:
                raise rules.already_exists(type(resource), resource.name)
            if check is not None:
                await check(TransactionReads(session))
            revision, now = await self._bump(session)
            created = _stamped(resource, revision, now, created=True)
            body = kind.dump(created)
            await session.execute(
                sa.insert(kind.table).values(name=created.name, body=body, **kind.columns(created))
            )
            await self._record(session, revision, now, ChangeType.CREATED, kind, created.name, body)
            await self._after_save(session, created)
            if request is not None:
                await session.execute(
                    sa.insert(requests_table).values(
                        request_id=request.request_id,
                        method=request.method,
                        fingerprint=request.fingerprint,
                        resource_type=kind.type_name,
                        body=body,
                        create_time=now,
                    )
                )
            return created

        return await self.db.write(work)

    async def update(
        self,
        kind: type[R],
        name: str,
        change: Callable[[R], R],
        check: TransactionCheck | None = None,
        *,
        upsert: R | None = None,
    ) -> R:
        """Applies `change` to the stored resource; with `upsert`, to that when none is stored.
        Refused when there is none (and no `upsert`), or by `check`."""
        stored_as = kind_of(kind)

        async def work(session: AsyncSession) -> R:
            current: R | None = await _find(session, stored_as, name)
            base = current if current is not None else upsert
            if base is None:
                raise rules.not_found(kind, name)
            changed = change(base)
            if check is not None:
                await check(TransactionReads(session))
            revision, now = await self._bump(session)
            updated = _stamped(changed, revision, now, created=False)
            body, columns = stored_as.dump(updated), stored_as.columns(updated)
            if current is None:
                await session.execute(
                    sa.insert(stored_as.table).values(name=name, body=body, **columns)
                )
            else:
                await session.execute(
                    sa.update(stored_as.table)
                    .where(stored_as.table.c.name == name)
                    .values(body=body, **columns)
                )
            change_type = ChangeType.UPDATED if current is not None else ChangeType.CREATED
            await self._record(session, revision, now, change_type, stored_as, name, body)
            await self._after_save(session, updated)
            return updated

        return await self.db.write(work)

    async def delete(self, kind: type[Named], name: str) -> int:
        """Removes a resource; the revision of the removal."""
        stored_as = kind_of(kind)

        async def work(session: AsyncSession) -> int:
            table = stored_as.table
            deleted = await session.execute(sa.delete(table).where(table.c.name == name))
            if rowcount(deleted) == 0:
                raise rules.not_found(kind, name)
            revision, now = await self._bump(session)
            await self._record(session, revision, now, ChangeType.DELETED, stored_as, name, None)
            return revision

        return await self.db.write(work)

    async def _after_save(self, session: AsyncSession, resource: Named) -> None:
        if isinstance(resource, VendorSystem):
            await session.execute(
                sa.delete(client_ids_table).where(client_ids_table.c.vendor_system == resource.name)
            )
            await session.execute(
                sa.insert(client_ids_table),
                [{"client_id": c, "vendor_system": resource.name} for c in resource.client_ids],
            )

    # -- lists -------------------------------------------------------------------------------

    async def _page(
        self, kind: Kind, page: PageRequest, where: Sequence[sa.ColumnElement[bool]] = ()
    ) -> Page[Any]:
        size = page.size or DEFAULT_PAGE_SIZE
        after = paging.position(page.token, page.filters, lambda parts: parts[0]) or ""
        query = sa.select(kind.table.c.name, kind.table.c.body).order_by(kind.table.c.name)
        for condition in where:
            query = query.where(condition)
        if after:
            query = query.where(kind.table.c.name > after)
        async with self.db.read() as session:
            rows = list(await session.execute(query.limit(size + 1)))
        items = [kind.load(body) for _, body in rows[:size]]
        more = len(rows) > size
        return Page(items, paging.page_token([rows[size - 1][0]], page.filters) if more else "")

    async def list_municipalities(
        self, page: PageRequest, *, state: MunicipalityState | None = None
    ) -> Page[Municipality]:
        where = [] if state is None else [municipalities_table.c.state == state.value]
        return await self._page(kind_of(Municipality), page, where)

    async def list_vendors(self, page: PageRequest) -> Page[Vendor]:
        return await self._page(kind_of(Vendor), page)

    async def list_vendor_systems(
        self, page: PageRequest, *, vendor: str | None = None, name: str | None = None
    ) -> Page[VendorSystem]:
        """The systems of the vendor with this organisation number (all without one); with
        `name`, only that one."""
        where = []
        if vendor is not None:
            vendor_name = names.VENDOR.format(organization_number=vendor)
            where.append(vendor_systems_table.c.vendor == vendor_name)
        if name is not None:
            where.append(vendor_systems_table.c.name == name)
        return await self._page(kind_of(VendorSystem), page, where)

    async def list_agreements(
        self,
        page: PageRequest,
        *,
        municipality: str | None = None,
        vendor_system: str | None = None,
        state: AgreementState | None = None,
    ) -> Page[Agreement]:
        """The agreements of the municipality with this organisation number (all without one),
        of one vendor system, in one state."""
        where = []
        if municipality is not None:
            where.append(agreements_table.c.municipality == municipality)
        if vendor_system is not None:
            where.append(agreements_table.c.vendor_system == vendor_system)
        if state is not None:
            where.append(agreements_table.c.state == state.value)
        return await self._page(kind_of(Agreement), page, where)
