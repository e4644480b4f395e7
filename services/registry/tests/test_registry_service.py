"""The registry's use cases on an in-memory store (no server, no database): the order of their
checks, what a refused write leaves behind, the snapshot that answers CheckAccess, and the
change feed with WatchChanges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from vkp_lib import paging
from vkp_lib.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vkp_registry.domain import rules
from vkp_registry.domain.model import (
    Action,
    Adapter,
    Agreement,
    AgreementState,
    Change,
    ChangeType,
    DeliveryMode,
    DenialReason,
    EpjEndpoint,
    Municipality,
    MunicipalityState,
    Named,
    Page,
    PageRequest,
    PartnerProfile,
    R,
    RequestKey,
    Resource,
    ServiceCode,
    Vendor,
    VendorSystem,
)
from vkp_registry.domain.reasons import Reason
from vkp_registry.domain.updates import AgreementUpdate, MunicipalityUpdate
from vkp_registry.feed import Feed
from vkp_registry.service import Check, RegistryService

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLACE = Municipality("964120005", "4699", "Fjordvik kommune")
VENDOR = Vendor("912340007", "Dosetta AS")
SYSTEM = VendorSystem("912340007", "dispenser-cloud", "Dosetta", ("dosetta",))


class MemoryStore:
    """The store's interface in memory. A write's checks run before it changes anything, so a
    refused write leaves nothing behind, as its transaction would."""

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}
        self.changes: list[Change] = []
        self.requests: dict[str, tuple[RequestKey, Any]] = {}
        self.failures = 0  # the next reads of the change log that fail

    @property
    def revision(self) -> int:
        return self.changes[-1].revision if self.changes else 0

    def commit(self, kind: ChangeType, name: str, resource: Any, *, created: bool = False) -> Any:
        """What another replica (or this store) commits: the next revision and its change."""
        revision = self.revision + 1
        if resource is not None:
            times = {"create_time": NOW} if created and hasattr(resource, "create_time") else {}
            if hasattr(resource, "update_time"):
                times["update_time"] = NOW
            resource = replace(resource, revision=revision, **times)
            self.resources[name] = resource
        else:
            del self.resources[name]
        self.changes.append(Change(revision, NOW, kind, name, resource))
        return resource

    # -- the change log ------------------------------------------------------------------------

    async def snapshot(self) -> tuple[int, list[Resource]]:
        return self.revision, list(self.resources.values())

    async def changes_after(
        self, revision: int, *, up_to: int | None = None, limit: int = 500
    ) -> list[Change]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is away")
        top = self.revision if up_to is None else up_to
        return [c for c in self.changes if revision < c.revision <= top][:limit]

    # -- reads, in a write or not --------------------------------------------------------------

    async def find(self, kind: type[R], name: str) -> R | None:
        found = self.resources.get(name)
        return found if isinstance(found, kind) else None

    async def client_ids_taken(self, client_ids: Sequence[str], *, by_other_than: str) -> list[str]:
        owners = {
            c: s.name
            for s in self.resources.values()
            if isinstance(s, VendorSystem)
            for c in s.client_ids
        }
        return [c for c in client_ids if owners.get(c, by_other_than) != by_other_than]

    async def municipality_number_taken(self, number: str) -> bool:
        return any(
            isinstance(m, Municipality) and m.municipality_number == number
            for m in self.resources.values()
        )

    # -- writes --------------------------------------------------------------------------------

    async def create(
        self, resource: R, *, request: RequestKey | None = None, check: Check | None = None
    ) -> R:
        if request is not None and request.request_id in self.requests:
            earlier, answer = self.requests[request.request_id]
            rules.check_same_request(earlier, request)
            first: R = answer
            return first
        if resource.name in self.resources:
            raise rules.already_exists(type(resource), resource.name)
        if check is not None:
            await check(self)
        created: R = self.commit(ChangeType.CREATED, resource.name, resource, created=True)
        if request is not None:
            self.requests[request.request_id] = (request, created)
        return created

    async def update(
        self,
        kind: type[R],
        name: str,
        change: Callable[[R], R],
        check: Check | None = None,
        *,
        upsert: R | None = None,
    ) -> R:
        current = await self.find(kind, name)
        base = current if current is not None else upsert
        if base is None:
            raise rules.not_found(kind, name)
        changed = change(base)
        if check is not None:
            await check(self)
        kind_of_change = ChangeType.UPDATED if current is not None else ChangeType.CREATED
        updated: R = self.commit(kind_of_change, name, changed)
        return updated

    async def delete(self, kind: type[Named], name: str) -> int:
        if await self.find(kind, name) is None:
            raise rules.not_found(kind, name)
        self.commit(ChangeType.DELETED, name, None)
        return self.revision

    # -- lists ---------------------------------------------------------------------------------

    def _page(self, kind: type[R], page: PageRequest, keep: Callable[[R], bool]) -> Page[R]:
        after = paging.position(page.token, page.filters, lambda parts: parts[0]) or ""
        size = page.size or 50
        found = sorted(
            (r for r in self.resources.values() if isinstance(r, kind) and keep(r)),
            key=lambda r: r.name,
        )
        found = [r for r in found if r.name > after]
        more = len(found) > size
        token = paging.page_token([found[size - 1].name], page.filters) if more else ""
        return Page(found[:size], token)

    async def list_municipalities(
        self, page: PageRequest, *, state: MunicipalityState | None = None
    ) -> Page[Municipality]:
        return self._page(Municipality, page, lambda m: state in (None, m.state))

    async def list_vendors(self, page: PageRequest) -> Page[Vendor]:
        return self._page(Vendor, page, lambda v: True)

    async def list_vendor_systems(
        self, page: PageRequest, *, vendor: str | None = None, name: str | None = None
    ) -> Page[VendorSystem]:
        return self._page(
            VendorSystem,
            page,
            lambda s: vendor in (None, s.vendor_organization_number) and name in (None, s.name),
        )

    async def list_agreements(
        self,
        page: PageRequest,
        *,
        municipality: str | None = None,
        vendor_system: str | None = None,
        state: AgreementState | None = None,
    ) -> Page[Agreement]:
        return self._page(
            Agreement,
            page,
            lambda a: (
                municipality in (None, a.municipality)
                and vendor_system in (None, a.vendor_system)
                and state in (None, a.state)
            ),
        )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@asynccontextmanager
async def following(store: MemoryStore, poll_seconds: float) -> AsyncIterator[Feed]:
    """A feed following the store, as the service's background task, until the block ends."""
    feed = Feed(store, poll_seconds=poll_seconds)
    await feed.load()
    stopping = asyncio.Event()
    follower = asyncio.create_task(feed.run(stopping))
    try:
        yield feed
    finally:
        stopping.set()
        await asyncio.wait_for(follower, 5)


@pytest.fixture
async def service(store: MemoryStore) -> AsyncIterator[RegistryService]:
    """The use cases with their feed following the store. It polls only every minute, so a
    write is seen at once only because the writer nudges it."""
    async with following(store, poll_seconds=60) as feed:
        yield RegistryService(store, feed, heartbeat_seconds=0.05, clock=lambda: NOW)


async def _connected(service: RegistryService) -> Agreement:
    """Fjordvik, Dosetta's dispenser system and an agreement between them for MD journaling."""
    await service.create_municipality(PLACE)
    await service.create_vendor(VENDOR)
    await service.create_vendor_system(SYSTEM)
    return await service.create_agreement(
        Agreement(PLACE.organization_number, "", SYSTEM.name, (ServiceCode.MD,), (Action.JOURNAL,))
    )


def _decide(service: RegistryService, client_id: str = "dosetta") -> DenialReason | None:
    decision = service.check_access(
        client_id, PLACE.organization_number, ServiceCode.MD, Action.JOURNAL
    )
    return None if decision.allowed else decision.denial_reason


# -- creates -----------------------------------------------------------------------------------


async def test_a_write_answers_with_its_revision_once_the_snapshot_has_it(
    service: RegistryService,
) -> None:
    created = await asyncio.wait_for(service.create_municipality(PLACE), 2)
    assert created.revision == 1
    assert service.feed.revision == 1
    assert service.feed.snapshot.municipalities[PLACE.organization_number] == created


async def test_a_retried_create_gets_the_first_answer_and_writes_nothing(
    service: RegistryService, store: MemoryStore
) -> None:
    key = RequestKey("r-1", "CreateVendor", rules.fingerprint(b"dosetta"))
    first = await service.create_vendor(VENDOR, key)
    again = await service.create_vendor(VENDOR, key)
    assert again == first
    assert store.revision == 1


async def test_a_request_id_used_for_another_request_is_refused(
    service: RegistryService,
) -> None:
    await service.create_vendor(VENDOR, RequestKey("r-1", "CreateVendor", "a"))
    with pytest.raises(FailedPrecondition) as caught:
        await service.create_vendor(
            Vendor("971130008", "Annen AS"), RequestKey("r-1", "CreateVendor", "b")
        )
    assert caught.value.reason == Reason.REQUEST_ID_REUSED


async def test_a_second_municipality_with_the_same_kommunenummer_is_refused(
    service: RegistryService, store: MemoryStore
) -> None:
    await service.create_municipality(PLACE)
    with pytest.raises(AlreadyExists) as caught:
        await service.create_municipality(Municipality("971130008", "4699", "Tvilling kommune"))
    assert caught.value.reason == Reason.MUNICIPALITY_EXISTS
    assert store.revision == 1


async def test_a_municipality_outside_every_county_is_refused_before_the_store(
    service: RegistryService, store: MemoryStore
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await service.create_municipality(Municipality("971130008", "9901", "Utenfor"))
    assert caught.value.reason == Reason.INVALID_MUNICIPALITY_NUMBER
    assert store.changes == []


async def test_a_system_of_an_unknown_vendor_is_refused_and_nothing_is_written(
    service: RegistryService, store: MemoryStore
) -> None:
    with pytest.raises(NotFound) as caught:
        await service.create_vendor_system(SYSTEM)
    assert caught.value.reason == Reason.VENDOR_NOT_FOUND
    assert store.changes == []


async def test_a_client_id_of_another_system_is_refused(service: RegistryService) -> None:
    await service.create_vendor(VENDOR)
    await service.create_vendor_system(SYSTEM)
    other = VendorSystem(VENDOR.organization_number, "backup", "Reserve", ("spare", "dosetta"))
    with pytest.raises(AlreadyExists) as caught:
        await service.create_vendor_system(other)
    assert caught.value.reason == Reason.CLIENT_ID_TAKEN
    assert [v.description for v in caught.value.violations] == ["dosetta is taken"]


async def test_an_agreement_without_an_id_is_named_after_its_vendor_system(
    service: RegistryService,
) -> None:
    agreement = await _connected(service)
    assert agreement.name == "municipalities/964120005/agreements/912340007-dispenser-cloud"


async def test_an_agreement_needs_its_vendor_system(service: RegistryService) -> None:
    await service.create_municipality(PLACE)
    with pytest.raises(NotFound) as caught:
        await service.create_agreement(
            Agreement(PLACE.organization_number, "a1", SYSTEM.name, (ServiceCode.MD,), ())
        )
    assert caught.value.reason == Reason.VENDOR_SYSTEM_NOT_FOUND


# -- reads and updates -------------------------------------------------------------------------


async def test_a_missing_resource_is_not_found_with_its_kinds_reason(
    service: RegistryService,
) -> None:
    with pytest.raises(NotFound) as caught:
        await service.get_agreement("municipalities/964120005/agreements/none")
    assert caught.value.reason == Reason.AGREEMENT_NOT_FOUND
    with pytest.raises(NotFound) as caught:
        await service.update_municipality(
            PLACE.name, MunicipalityUpdate(frozenset({"display_name"}), display_name="X")
        )
    assert caught.value.reason == Reason.MUNICIPALITY_NOT_FOUND


async def test_an_update_clearing_a_needed_field_is_refused_before_the_store(
    service: RegistryService, store: MemoryStore
) -> None:
    await service.create_municipality(PLACE)
    with pytest.raises(InvalidArgument) as caught:
        await service.update_municipality(PLACE.name, MunicipalityUpdate(frozenset({"state"})))
    assert caught.value.reason == Reason.INVALID_UPDATE_MASK
    assert store.revision == 1


async def test_an_endpoint_is_read_with_the_state_of_its_municipality(
    service: RegistryService,
) -> None:
    await service.create_municipality(replace(PLACE, state=MunicipalityState.SUSPENDED))
    endpoint = EpjEndpoint(
        PLACE.organization_number, Adapter.FHIR, "http://epj.example/fhir", DeliveryMode.PULL
    )
    await service.create_epj_endpoint(endpoint)
    found, state = await service.get_epj_endpoint(endpoint.name)
    assert (found.delivery_mode, state) == (DeliveryMode.PULL, MunicipalityState.SUSPENDED)


async def test_an_endpoint_needs_its_municipality(service: RegistryService) -> None:
    endpoint = EpjEndpoint("971130008", Adapter.FHIR, "http://epj.example/fhir", DeliveryMode.PUSH)
    with pytest.raises(NotFound) as caught:
        await service.create_epj_endpoint(endpoint)
    assert caught.value.reason == Reason.MUNICIPALITY_NOT_FOUND


async def test_a_partner_profile_is_empty_until_set_but_needs_its_municipality(
    service: RegistryService,
) -> None:
    with pytest.raises(NotFound) as caught:
        await service.get_partner_profile(PLACE.organization_number)
    assert caught.value.reason == Reason.MUNICIPALITY_NOT_FOUND
    await service.create_municipality(PLACE)
    assert (await service.get_partner_profile(PLACE.organization_number)).mappings == ()
    mappings = ((ServiceCode.MD, ("27", "2.7.*")),)
    await service.update_partner_profile(PartnerProfile(PLACE.organization_number, mappings))
    assert (await service.get_partner_profile(PLACE.organization_number)).mappings == mappings


async def test_systems_are_listed_by_the_client_id_this_replica_knows(
    service: RegistryService,
) -> None:
    await service.create_vendor(VENDOR)
    await service.create_vendor_system(SYSTEM)
    found = await service.list_vendor_systems(PageRequest(), client_id="dosetta")
    unknown = await service.list_vendor_systems(PageRequest(), client_id="nobody")
    assert ([s.name for s in found.items], unknown.items) == ([SYSTEM.name], [])


# -- the access decision and the feed ----------------------------------------------------------


async def test_a_decision_follows_each_write_made_through_this_replica(
    service: RegistryService,
) -> None:
    agreement = await _connected(service)
    assert _decide(service) is None
    await service.update_agreement(
        agreement.name, AgreementUpdate(frozenset({"state"}), state=AgreementState.REVOKED)
    )
    assert _decide(service) is DenialReason.NOT_ACTIVE
    await service.delete_agreement(agreement.name)
    assert _decide(service) is DenialReason.NO_ACCESS


async def test_a_change_another_replica_commits_is_applied_within_a_poll(
    store: MemoryStore,
) -> None:
    async with following(store, poll_seconds=0.05) as feed:
        store.commit(ChangeType.CREATED, PLACE.name, PLACE, created=True)
        await feed.wait_beyond(0, seconds=2)
        assert PLACE.organization_number in feed.snapshot.municipalities


async def test_the_feed_reads_on_after_the_database_was_away(store: MemoryStore) -> None:
    async with following(store, poll_seconds=0.01) as feed:
        store.failures = 3
        store.commit(ChangeType.CREATED, PLACE.name, PLACE, created=True)
        await feed.wait_beyond(0, seconds=5)
        assert (store.failures, feed.revision) == (0, 1)


async def test_watch_changes_sends_the_changes_after_a_revision_then_heartbeats(
    service: RegistryService,
) -> None:
    await _connected(service)
    batches = service.watch_changes(2)
    changes, head = await anext(batches)
    assert ([c.revision for c in changes], head) == ([3, 4], 4)
    assert await anext(batches) == ([], 4)
    await batches.aclose()


async def test_watch_changes_ends_when_the_service_stops(store: MemoryStore) -> None:
    async with following(store, poll_seconds=60) as feed:
        batches = RegistryService(store, feed, heartbeat_seconds=60).watch_changes(0)
        assert await anext(batches) == ([], 0)
        waiting = asyncio.ensure_future(anext(batches))
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 2)
