"""The registry as a real process, on SQLite and on PostgreSQL: its resources, idempotent
creates, paging, validation, the access decision and the change feed."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_lib.clients import insecure_channel
from vkp_lib.errors import Unavailable
from vkp_lib.identity.issuer import DevelopmentIssuer, ServiceTokenSource, load_private_key
from vkp_lib.identity.permissions import Scopes
from vkp_lib.national_id import synthetic_organization_number
from vkp_lib.registry_client import DecisionClient
from vkp_lib.sandbox import DISPENSER, FJORDVIK, NORDHEIM, SANDBOX, SUPERVISION
from vkp_lib.status import error_info
from vkp_lib.testing.processes import ServiceProcess
from vkp_registry.domain.rules import COUNTIES

MD, DT, TA = common_pb2.SERVICE_CODE_MD, common_pb2.SERVICE_CODE_DT, common_pb2.SERVICE_CODE_TA
JOURNAL, LOOKUP = pb.ACCESS_ACTION_JOURNAL, pb.ACCESS_ACTION_LOOKUP
Metadata = tuple[tuple[str, str], ...]
_numbers = itertools.count()
_rng = random.Random()


def org() -> str:
    return synthetic_organization_number(_rng)


def kommunenummer() -> str:
    n = next(_numbers) + _rng.randrange(0, 1500 - 200)
    counties = sorted(COUNTIES)
    return f"{counties[n % len(counties)]}{(n // len(counties)) % 100:02d}"


@dataclass
class Registry:
    process: ServiceProcess
    channel: grpc.aio.Channel
    stub: registry_pb2_grpc.RegistryServiceAsyncStub
    admin: Metadata
    service: Metadata

    async def municipality(
        self, *, state: pb.MunicipalityState.ValueType = pb.MUNICIPALITY_STATE_UNSPECIFIED
    ) -> pb.Municipality:
        for _ in range(20):  # a kommunenummer another test took: draw again
            try:
                created = await self.stub.CreateMunicipality(
                    pb.CreateMunicipalityRequest(
                        municipality=pb.Municipality(
                            organization_number=org(),
                            municipality_number=kommunenummer(),
                            display_name="Testvik kommune",
                            state=state,
                        )
                    ),
                    metadata=self.admin,
                )
                return created.municipality
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.ALREADY_EXISTS:
                    raise
        raise AssertionError("no free kommunenummer")

    async def system(self, *client_ids: str) -> pb.VendorSystem:
        vendor = (
            await self.stub.CreateVendor(
                pb.CreateVendorRequest(
                    vendor=pb.Vendor(organization_number=org(), display_name="Leverandør AS")
                ),
                metadata=self.admin,
            )
        ).vendor
        return (
            await self.stub.CreateVendorSystem(
                pb.CreateVendorSystemRequest(
                    parent=vendor.name,
                    system_id="platform",
                    vendor_system=pb.VendorSystem(
                        display_name="Plattform",
                        client_ids=list(client_ids) or [f"client-{uuid.uuid4().hex[:12]}"],
                    ),
                ),
                metadata=self.admin,
            )
        ).vendor_system

    async def agreement(
        self,
        municipality: pb.Municipality,
        system: pb.VendorSystem,
        *,
        codes: tuple[common_pb2.ServiceCode.ValueType, ...] = (MD,),
        actions: tuple[pb.AccessAction.ValueType, ...] = (JOURNAL, LOOKUP),
        validity: Any = None,
    ) -> pb.Agreement:
        return (
            await self.stub.CreateAgreement(
                pb.CreateAgreementRequest(
                    parent=municipality.name,
                    agreement=pb.Agreement(
                        vendor_system=system.name,
                        service_codes=codes,
                        actions=actions,
                        validity=validity,
                    ),
                ),
                metadata=self.admin,
            )
        ).agreement

    async def decide(
        self,
        client_id: str,
        municipality: str,
        code: common_pb2.ServiceCode.ValueType = MD,
        action: pb.AccessAction.ValueType = JOURNAL,
    ) -> pb.AccessDecision:
        request = pb.CheckAccessRequest(
            client_id=client_id,
            municipality=municipality,
            service_code=code,
            action=action,
        )
        return (await self.stub.CheckAccess(request, metadata=self.service)).decision


def _database(kind: str, tmp: Path, postgres_url: str) -> str:
    return f"sqlite+aiosqlite:///{tmp / 'registry.db'}" if kind == "sqlite" else postgres_url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def registry_process(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_env: dict[str, str],
    postgres_url: str,
) -> Iterator[ServiceProcess]:
    url = _database(request.param, tmp_path_factory.mktemp("registry"), postgres_url)
    process = ServiceProcess("registry", {**auth_env, "VKP_DB_URL": url})
    try:
        process.wait_serving()
        yield process
    finally:
        process.send_sigterm()
        assert process.terminate() == 0, process.logs()[-3000:]


def _connect(process: ServiceProcess, issuer: DevelopmentIssuer) -> Registry:
    channel = grpc.aio.insecure_channel(process.address)
    admin = issuer.vendor_token("registry-admin", [Scopes.ADMIN])
    return Registry(
        process,
        channel,
        registry_pb2_grpc.RegistryServiceStub(channel),
        (("authorization", f"Bearer {admin}"),),
        (("authorization", f"Bearer {issuer.service_token('ingest')}"),),
    )


@pytest.fixture
async def registry(
    registry_process: ServiceProcess, dev_issuer: DevelopmentIssuer
) -> AsyncIterator[Registry]:
    connected = _connect(registry_process, dev_issuer)
    yield connected
    await connected.channel.close()


def reason_of(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[str, str]:
    info = error_info(caught.value)
    assert info is not None
    return caught.value.code().name, info.reason


# -- resources ---------------------------------------------------------------------------------


async def test_a_municipality_is_created_read_and_suspended(registry: Registry) -> None:
    created = await registry.municipality()
    assert created.state == pb.MUNICIPALITY_STATE_ACTIVE
    assert created.revision > 0
    got = await registry.stub.GetMunicipality(
        pb.GetMunicipalityRequest(name=created.name), metadata=registry.admin
    )
    assert got.municipality == created
    update = pb.UpdateMunicipalityRequest(
        municipality=pb.Municipality(
            name=created.name, state=pb.MUNICIPALITY_STATE_SUSPENDED, display_name="ignored"
        )
    )
    update.update_mask.paths.append("state")
    updated = (await registry.stub.UpdateMunicipality(update, metadata=registry.admin)).municipality
    assert updated.state == pb.MUNICIPALITY_STATE_SUSPENDED
    assert updated.display_name == created.display_name
    assert updated.revision > created.revision


async def test_an_organisation_number_with_a_wrong_check_digit_is_refused(
    registry: Registry,
) -> None:
    good = org()
    bad = good[:8] + str((int(good[8]) + 1) % 10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.CreateVendor(
            pb.CreateVendorRequest(vendor=pb.Vendor(organization_number=bad, display_name="X")),
            metadata=registry.admin,
        )
    assert reason_of(caught) == ("INVALID_ARGUMENT", "INVALID_ORGANIZATION_NUMBER")


async def test_a_kommunenummer_outside_every_county_is_refused(registry: Registry) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.CreateMunicipality(
            pb.CreateMunicipalityRequest(
                municipality=pb.Municipality(
                    organization_number=org(), municipality_number="9901", display_name="X"
                )
            ),
            metadata=registry.admin,
        )
    assert reason_of(caught) == ("INVALID_ARGUMENT", "INVALID_MUNICIPALITY_NUMBER")


async def test_a_retried_create_returns_the_first_answer_and_creates_nothing_more(
    registry: Registry,
) -> None:
    request = pb.CreateVendorRequest(
        vendor=pb.Vendor(organization_number=org(), display_name="Gjentakelse AS"),
        request_id=str(uuid.uuid4()),
    )
    first = await registry.stub.CreateVendor(request, metadata=registry.admin)
    again = await registry.stub.CreateVendor(request, metadata=registry.admin)
    assert again == first
    other = pb.CreateVendorRequest(
        vendor=pb.Vendor(organization_number=org(), display_name="Annen AS"),
        request_id=request.request_id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.CreateVendor(other, metadata=registry.admin)
    assert reason_of(caught) == ("FAILED_PRECONDITION", "REQUEST_ID_REUSED")
    request.ClearField("request_id")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.CreateVendor(request, metadata=registry.admin)
    assert reason_of(caught) == ("ALREADY_EXISTS", "VENDOR_EXISTS")


async def test_lists_page_through_every_item_once(registry: Registry) -> None:
    place = await registry.municipality()
    systems = [await registry.system() for _ in range(5)]
    for system in systems:
        await registry.agreement(place, system)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await registry.stub.ListAgreements(
            pb.ListAgreementsRequest(parent=place.name, page_size=2, page_token=token),
            metadata=registry.admin,
        )
        seen += [a.vendor_system for a in page.agreements]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(s.name for s in systems)
    assert pages == 3
    first = await registry.stub.ListAgreements(
        pb.ListAgreementsRequest(parent=place.name, page_size=2), metadata=registry.admin
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.ListAgreements(
            pb.ListAgreementsRequest(
                parent="municipalities/-", page_size=2, page_token=first.next_page_token
            ),
            metadata=registry.admin,
        )
    assert reason_of(caught) == ("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN")


async def test_a_client_id_belongs_to_one_vendor_system(registry: Registry) -> None:
    client_id = f"shared-{uuid.uuid4().hex[:8]}"
    system = await registry.system(client_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.system(client_id)
    assert reason_of(caught) == ("ALREADY_EXISTS", "CLIENT_ID_TAKEN")
    found = await registry.stub.ListVendorSystems(
        pb.ListVendorSystemsRequest(parent="vendors/-", client_id=client_id),
        metadata=registry.admin,
    )
    assert [s.name for s in found.vendor_systems] == [system.name]
    update = pb.UpdateVendorSystemRequest(
        vendor_system=pb.VendorSystem(name=system.name, client_ids=[client_id, f"{client_id}-2"])
    )
    update.update_mask.paths.append("client_ids")
    updated = await registry.stub.UpdateVendorSystem(update, metadata=registry.admin)
    assert list(updated.vendor_system.client_ids) == [client_id, f"{client_id}-2"]


async def test_vendors_systems_and_agreements_are_read_back_by_name(registry: Registry) -> None:
    place, system = await registry.municipality(), await registry.system()
    agreement = await registry.agreement(place, system)
    vendor_name = system.name.rsplit("/systems/", 1)[0]
    vendor = (
        await registry.stub.GetVendor(
            pb.GetVendorRequest(name=vendor_name), metadata=registry.admin
        )
    ).vendor
    assert vendor.display_name == "Leverandør AS"
    got_system = await registry.stub.GetVendorSystem(
        pb.GetVendorSystemRequest(name=system.name), metadata=registry.admin
    )
    assert got_system.vendor_system == system
    got_agreement = await registry.stub.GetAgreement(
        pb.GetAgreementRequest(name=agreement.name), metadata=registry.admin
    )
    assert got_agreement.agreement == agreement
    listed: list[str] = []
    token = ""
    while True:
        page = await registry.stub.ListVendors(
            pb.ListVendorsRequest(page_size=100, page_token=token), metadata=registry.admin
        )
        listed += [v.name for v in page.vendors]
        token = page.next_page_token
        if not token:
            break
    assert vendor_name in listed
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.GetAgreement(
            pb.GetAgreementRequest(name=f"{place.name}/agreements/none"), metadata=registry.admin
        )
    assert reason_of(caught) == ("NOT_FOUND", "AGREEMENT_NOT_FOUND")


async def test_a_system_of_an_unknown_vendor_is_refused(registry: Registry) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.CreateVendorSystem(
            pb.CreateVendorSystemRequest(
                parent=f"vendors/{org()}",
                system_id="ghost",
                vendor_system=pb.VendorSystem(display_name="X", client_ids=["ghost-client"]),
            ),
            metadata=registry.admin,
        )
    assert reason_of(caught) == ("NOT_FOUND", "VENDOR_NOT_FOUND")


async def test_an_epj_endpoint_is_set_changed_read_by_a_service_and_removed(
    registry: Registry,
) -> None:
    place = await registry.municipality()
    endpoint = pb.EpjEndpoint(
        adapter=pb.EPJ_ADAPTER_FHIR,
        base_url="http://127.0.0.1:8085/4699/fhir",
        delivery_mode=pb.DELIVERY_MODE_PUSH,
        credentials_secret="epj-4699",
    )
    endpoint.request_timeout.FromSeconds(5)
    created = (
        await registry.stub.CreateEpjEndpoint(
            pb.CreateEpjEndpointRequest(parent=place.name, epj_endpoint=endpoint),
            metadata=registry.admin,
        )
    ).epj_endpoint
    assert created.name == f"{place.name}/epjEndpoint"
    update = pb.UpdateEpjEndpointRequest(
        epj_endpoint=pb.EpjEndpoint(name=created.name, delivery_mode=pb.DELIVERY_MODE_PULL)
    )
    update.update_mask.paths.append("delivery_mode")
    await registry.stub.UpdateEpjEndpoint(update, metadata=registry.admin)
    seen = await registry.stub.GetEpjEndpoint(
        pb.GetEpjEndpointRequest(name=created.name), metadata=registry.service
    )
    assert seen.epj_endpoint.delivery_mode == pb.DELIVERY_MODE_PULL
    assert seen.epj_endpoint.request_timeout.seconds == 5
    assert seen.epj_endpoint.credentials_secret == "epj-4699"
    assert seen.municipality_state == pb.MUNICIPALITY_STATE_ACTIVE
    await registry.stub.DeleteEpjEndpoint(
        pb.DeleteEpjEndpointRequest(name=created.name), metadata=registry.admin
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.GetEpjEndpoint(
            pb.GetEpjEndpointRequest(name=created.name), metadata=registry.admin
        )
    assert reason_of(caught) == ("NOT_FOUND", "EPJ_ENDPOINT_NOT_FOUND")


async def test_an_agreement_is_listed_by_its_filters_changed_and_removed(
    registry: Registry,
) -> None:
    place = await registry.municipality()
    one, two = await registry.system(), await registry.system()
    first = await registry.agreement(place, one)
    await registry.agreement(place, two)
    by_system = await registry.stub.ListAgreements(
        pb.ListAgreementsRequest(parent="municipalities/-", vendor_system=one.name),
        metadata=registry.admin,
    )
    assert [a.name for a in by_system.agreements] == [first.name]
    update = pb.UpdateAgreementRequest(
        agreement=pb.Agreement(name=first.name, service_codes=[MD, DT])
    )
    update.update_mask.paths.append("service_codes")
    changed = (await registry.stub.UpdateAgreement(update, metadata=registry.admin)).agreement
    assert list(changed.service_codes) == [MD, DT]
    await registry.stub.DeleteAgreement(
        pb.DeleteAgreementRequest(name=first.name), metadata=registry.admin
    )
    left = await registry.stub.ListAgreements(
        pb.ListAgreementsRequest(parent=place.name), metadata=registry.admin
    )
    assert [a.vendor_system for a in left.agreements] == [two.name]


async def test_a_partner_profile_is_empty_until_set(registry: Registry) -> None:
    place = await registry.municipality()
    name = f"{place.name}/partnerProfile"
    empty = await registry.stub.GetPartnerProfile(
        pb.GetPartnerProfileRequest(name=name), metadata=registry.admin
    )
    assert list(empty.partner_profile.mappings) == []
    mapping = pb.ServiceTypeMapping(service_code=MD, service_type_patterns=["27", "2.7.*"])
    await registry.stub.UpdatePartnerProfile(
        pb.UpdatePartnerProfileRequest(
            partner_profile=pb.PartnerProfile(name=name, mappings=[mapping])
        ),
        metadata=registry.admin,
    )
    got = await registry.stub.GetPartnerProfile(
        pb.GetPartnerProfileRequest(name=name), metadata=registry.admin
    )
    assert list(got.partner_profile.mappings) == [mapping]


async def test_lists_filter_by_state_and_by_parent(registry: Registry) -> None:
    suspended = await registry.municipality(state=pb.MUNICIPALITY_STATE_SUSPENDED)
    active = await registry.municipality()
    listed: list[str] = []
    token = ""
    while True:
        page = await registry.stub.ListMunicipalities(
            pb.ListMunicipalitiesRequest(
                state=pb.MUNICIPALITY_STATE_SUSPENDED, page_size=1000, page_token=token
            ),
            metadata=registry.admin,
        )
        listed += [m.name for m in page.municipalities]
        token = page.next_page_token
        if not token:
            break
    assert suspended.name in listed
    assert active.name not in listed
    one, two = await registry.system(), await registry.system()
    of_vendor = await registry.stub.ListVendorSystems(
        pb.ListVendorSystemsRequest(parent=one.name.rsplit("/systems/", 1)[0]),
        metadata=registry.admin,
    )
    assert [s.name for s in of_vendor.vendor_systems] == [one.name]
    kept, revoked = await registry.agreement(active, one), await registry.agreement(active, two)
    revoke = pb.UpdateAgreementRequest(
        agreement=pb.Agreement(name=revoked.name, state=pb.AGREEMENT_STATE_REVOKED)
    )
    revoke.update_mask.paths.append("state")
    await registry.stub.UpdateAgreement(revoke, metadata=registry.admin)
    by_state = await registry.stub.ListAgreements(
        pb.ListAgreementsRequest(parent=active.name, state=pb.AGREEMENT_STATE_ACTIVE),
        metadata=registry.admin,
    )
    assert [a.name for a in by_state.agreements] == [kept.name]


async def test_an_update_that_clears_a_field_an_agreement_needs_is_refused(
    registry: Registry,
) -> None:
    agreement = await registry.agreement(await registry.municipality(), await registry.system())
    update = pb.UpdateAgreementRequest(agreement=pb.Agreement(name=agreement.name))
    update.update_mask.paths.append("actions")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.UpdateAgreement(update, metadata=registry.admin)
    assert reason_of(caught) == ("INVALID_ARGUMENT", "INVALID_UPDATE_MASK")
    got = await registry.stub.GetAgreement(
        pb.GetAgreementRequest(name=agreement.name), metadata=registry.admin
    )
    assert got.agreement == agreement


async def test_an_agreement_created_without_an_id_is_named_after_its_vendor_system(
    registry: Registry,
) -> None:
    place, system = await registry.municipality(), await registry.system()
    agreement = await registry.agreement(place, system)
    vendor_org = system.name.split("/")[1]
    assert agreement.name == f"{place.name}/agreements/{vendor_org}-platform"


async def test_the_partner_profile_of_an_unknown_municipality_is_not_found(
    registry: Registry,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.GetPartnerProfile(
            pb.GetPartnerProfileRequest(name=f"municipalities/{org()}/partnerProfile"),
            metadata=registry.admin,
        )
    assert reason_of(caught) == ("NOT_FOUND", "MUNICIPALITY_NOT_FOUND")


# -- the access decision -----------------------------------------------------------------------


def _period(start: datetime | None, end: datetime | None) -> common_pb2.Period:
    def ts(value: datetime | None) -> Timestamp | None:
        if value is None:
            return None
        stamp = Timestamp()
        stamp.FromDatetime(value)
        return stamp

    return common_pb2.Period(start_time=ts(start), end_time=ts(end))


async def test_an_agreement_in_force_allows_with_the_partner_profile_patterns(
    registry: Registry,
) -> None:
    place, system = await registry.municipality(), await registry.system()
    agreement = await registry.agreement(place, system)
    await registry.stub.UpdatePartnerProfile(
        pb.UpdatePartnerProfileRequest(
            partner_profile=pb.PartnerProfile(
                name=f"{place.name}/partnerProfile",
                mappings=[pb.ServiceTypeMapping(service_code=MD, service_type_patterns=["27"])],
            )
        ),
        metadata=registry.admin,
    )
    await asyncio.sleep(0)  # the writer's own feed is nudged; the decision is current
    decision = await registry.decide(system.client_ids[0], place.organization_number, MD, LOOKUP)
    assert decision.allowed
    assert decision.agreement == agreement.name
    assert decision.vendor_system == system.name
    assert list(decision.service_type_patterns) == ["27"]
    assert decision.municipality_number == place.municipality_number


async def _denial(
    registry: Registry,
    client_id: str,
    municipality: str,
    code: common_pb2.ServiceCode.ValueType = MD,
    action: pb.AccessAction.ValueType = JOURNAL,
) -> str:
    decision = await registry.decide(client_id, municipality, code, action)
    assert not decision.allowed
    return pb.DenialReason.Name(decision.denial_reason).removeprefix("DENIAL_REASON_")


async def test_each_denial_has_its_reason(registry: Registry) -> None:
    place, system = await registry.municipality(), await registry.system()
    client = system.client_ids[0]
    assert await _denial(registry, client, place.organization_number) == "NO_ACCESS"
    agreement = await registry.agreement(place, system, codes=(MD,), actions=(JOURNAL,))
    assert await registry.decide(client, place.organization_number)
    assert await _denial(registry, client, place.organization_number, DT) == "NOT_ALLOWED"
    assert await _denial(registry, client, place.organization_number, MD, LOOKUP) == "NOT_ALLOWED"
    assert await _denial(registry, "nobody-knows-me", place.organization_number) == (
        "UNKNOWN_ORGANIZATION"
    )
    assert await _denial(registry, client, org()) == "UNKNOWN_ORGANIZATION"
    revoke = pb.UpdateAgreementRequest(
        agreement=pb.Agreement(name=agreement.name, state=pb.AGREEMENT_STATE_REVOKED)
    )
    revoke.update_mask.paths.append("state")
    await registry.stub.UpdateAgreement(revoke, metadata=registry.admin)
    assert await _denial(registry, client, place.organization_number) == "NOT_ACTIVE"


async def test_an_expired_agreement_and_a_suspended_municipality_are_not_active(
    registry: Registry,
) -> None:
    now = datetime.now(UTC)
    place, system = await registry.municipality(), await registry.system()
    await registry.agreement(
        place, system, validity=_period(now - timedelta(days=30), now - timedelta(days=1))
    )
    assert await _denial(registry, system.client_ids[0], place.organization_number) == (
        "NOT_ACTIVE"
    )
    suspended = await registry.municipality(state=pb.MUNICIPALITY_STATE_SUSPENDED)
    await registry.agreement(suspended, system)
    assert await _denial(registry, system.client_ids[0], suspended.organization_number) == (
        "NOT_ACTIVE"
    )


async def test_a_vendor_token_cannot_ask_for_a_decision(registry: Registry) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.CheckAccess(
            pb.CheckAccessRequest(
                client_id="x", municipality=org(), service_code=MD, action=JOURNAL
            ),
            metadata=registry.admin,
        )
    assert reason_of(caught) == ("PERMISSION_DENIED", "SERVICE_IDENTITY_REQUIRED")


# -- the change feed ---------------------------------------------------------------------------


async def test_a_subscriber_receives_each_change_with_its_resource(registry: Registry) -> None:
    head = (await registry.decide("nobody", org())).revision
    stream = registry.stub.WatchChanges(
        pb.WatchChangesRequest(after_revision=head), metadata=registry.service
    )
    place = await registry.municipality()
    received: list[pb.Change] = []
    async for response in stream:
        received += [c for c in response.changes if c.resource_name == place.name]
        if received:
            break
    stream.cancel()
    (change,) = received
    assert change.type == pb.CHANGE_TYPE_CREATED
    assert change.municipality == place
    assert change.revision == place.revision


async def test_seeding_the_sandbox_makes_its_decisions(
    registry_process: ServiceProcess, dev_issuer: DevelopmentIssuer
) -> None:
    def vkp(*args: str) -> str:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "vkp_cli",
                "registry",
                *args,
                "--target",
                registry_process.address,
                "--issuer-dir",
                str(dev_issuer.directory),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "250"},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "3 municipalities" in vkp("seed", "--sandbox")
    explain = (
        "explain",
        "--client-id",
        DISPENSER.client_ids[0],
        "--municipality",
        FJORDVIK.organization_number,
        "--service",
        "MD",
    )
    allowed = vkp(*explain)
    assert "allowed" in allowed
    assert "count as MD: 27" in allowed
    vkp("seed", "--sandbox")
    # Seeding again changes nothing but the partner profiles, which are set again.
    assert "Fjordvik kommune" in vkp("list", "municipalities")
    agreements = vkp("list", "agreements")
    assert agreements.count("municipalities/964120005/agreements/") == 4
    denied = vkp(
        "explain",
        "--client-id",
        SUPERVISION.client_ids[0],
        "--municipality",
        NORDHEIM.organization_number,
        "--service",
        "DT",
    )
    assert "denied: NO_ACCESS" in denied
    assert len(SANDBOX.agreements()) == 11


# -- two replicas on one PostgreSQL ------------------------------------------------------------


@pytest.fixture
def two_registries(
    auth_env: dict[str, str], postgres_url: str
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    first = ServiceProcess("registry", {**auth_env, "VKP_DB_URL": postgres_url})
    second = ServiceProcess("registry", {**auth_env, "VKP_DB_URL": postgres_url})
    try:
        first.wait_serving()
        second.wait_serving()
        yield first, second
    finally:
        for process in (first, second):
            process.send_sigterm()
        for process in (first, second):
            process.terminate()


async def test_a_revocation_through_one_replica_reaches_the_other_and_its_clients(
    two_registries: tuple[ServiceProcess, ServiceProcess], dev_issuer: DevelopmentIssuer
) -> None:
    one, other = (_connect(p, dev_issuer) for p in two_registries)
    place, system = await one.municipality(), await one.system()
    agreement = await one.agreement(place, system)
    tokens = ServiceTokenSource(load_private_key(dev_issuer.service_key_file), "ingest")
    stopping = asyncio.Event()
    async with insecure_channel(
        two_registries[1].address, "vkp.registry.v1.RegistryService", tokens
    ) as channel:
        client = DecisionClient(channel, heartbeat_seconds=0.5)
        follower = asyncio.create_task(client.run(stopping))
        try:
            assert await client.wait_for_revision(agreement.revision, seconds=10)
            client_id = system.client_ids[0]
            allowed = await client.check(client_id, place.organization_number, MD, JOURNAL)
            assert allowed.allowed
            revoke = pb.UpdateAgreementRequest(
                agreement=pb.Agreement(name=agreement.name, state=pb.AGREEMENT_STATE_REVOKED)
            )
            revoke.update_mask.paths.append("state")
            revoked = (await one.stub.UpdateAgreement(revoke, metadata=one.admin)).agreement
            # The other replica's subscriber sees the revocation ...
            stream = other.stub.WatchChanges(
                pb.WatchChangesRequest(after_revision=agreement.revision), metadata=other.service
            )
            async for response in stream:
                if any(c.revision == revoked.revision for c in response.changes):
                    break
            stream.cancel()
            # ... and the client library's next decision follows it.
            assert await client.wait_for_revision(revoked.revision, seconds=10)
            denied = await client.check(client_id, place.organization_number, MD, JOURNAL)
            assert not denied.allowed
            assert denied.denial_reason == pb.DENIAL_REASON_NOT_ACTIVE
        finally:
            stopping.set()
            await follower
    for registry in (one, other):
        await registry.channel.close()


async def test_a_subscriber_that_reconnects_from_its_last_revision_gets_what_it_missed(
    two_registries: tuple[ServiceProcess, ServiceProcess], dev_issuer: DevelopmentIssuer
) -> None:
    one, other = (_connect(p, dev_issuer) for p in two_registries)
    first = await one.municipality()
    # Subscribed to the other replica until the first change, then gone.
    stream = other.stub.WatchChanges(
        pb.WatchChangesRequest(after_revision=first.revision - 1), metadata=other.service
    )
    last = 0
    async for response in stream:
        if response.changes:
            last = response.changes[-1].revision
            break
    stream.cancel()
    missed = await one.municipality()  # committed while nobody listened
    stream = other.stub.WatchChanges(
        pb.WatchChangesRequest(after_revision=last), metadata=other.service
    )
    async for response in stream:
        if response.changes:
            assert response.changes[0].revision == last + 1
            if any(c.resource_name == missed.name for c in response.changes):
                break
    stream.cancel()
    for registry in (one, other):
        await registry.channel.close()


@pytest.fixture
def lone_registry(auth_env: dict[str, str], tmp_path: Path) -> Iterator[ServiceProcess]:
    """A registry of its own, for a test that stops it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    process = ServiceProcess("registry", {**auth_env, "VKP_DB_URL": url})
    try:
        process.wait_serving()
        yield process
    finally:
        process.send_sigterm()
        process.terminate()


async def test_cached_decisions_are_dropped_once_the_feed_has_been_down_too_long(
    lone_registry: ServiceProcess, dev_issuer: DevelopmentIssuer
) -> None:
    registry = _connect(lone_registry, dev_issuer)
    place, system = await registry.municipality(), await registry.system()
    await registry.agreement(place, system)
    tokens = ServiceTokenSource(load_private_key(dev_issuer.service_key_file), "lookup")
    stopping = asyncio.Event()
    address = lone_registry.address
    async with insecure_channel(address, "vkp.registry.v1.RegistryService", tokens) as channel:
        client = DecisionClient(channel, stale_after_seconds=1.0, heartbeat_seconds=0.2)
        follower = asyncio.create_task(client.run(stopping))
        try:
            assert await client.wait_for_revision(1, seconds=10)
            key = (system.client_ids[0], place.organization_number, MD, JOURNAL)
            assert (await client.check(*key)).allowed
            lone_registry.send_sigterm()
            lone_registry.terminate()
            # Within the bound the remembered decision serves on ...
            assert (await client.check(*key)).allowed
            await asyncio.sleep(2.0)
            # ... after it, the client asks the registry, which is gone.
            with pytest.raises(Unavailable) as caught:
                await client.check(*key)
            assert caught.value.reason == "REGISTRY_UNAVAILABLE"
        finally:
            stopping.set()
            await follower
    await registry.channel.close()
