"""Lookup end to end, over real processes: the registry (seeded with the sandbox, its EPJ
endpoints on the simulator), the audit service, ingest (the open-alarm query), lookup, and the
EPJ simulator with its faults; the services' storage on SQLite, then PostgreSQL.

Each lookup's audit record is found through the audit service by the request id the test sent
with the call (`x-request-id`), so "exactly one record" is counted per call."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from redis.asyncio import Redis

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp.common.v1 import common_pb2
from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp.lookup.v1 import lookup_pb2 as pb
from vkp.lookup.v1 import lookup_pb2_grpc
from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_epj_sim import sandbox_patients
from vkp_epj_sim.seed import SeedPatient
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import (
    BJORKEDAL,
    DISPENSER,
    FJORDVIK,
    HOME_FOLLOW_UP,
    NORDHEIM,
    RESPONSE_CENTRE,
    SUPERVISION,
    SandboxVendorSystem,
)
from vkp_lib.status import error_info
from vkp_lib.testing import hubs
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.hubs import Metadata, simulator_client, started_hub
from vkp_lib.testing.plugin import REDIS_URL, postgres_database
from vkp_lib.testing.processes import NOWHERE, ServiceProcess, stop_all
from vkp_lib.timestamps import timestamp

GRACE_SECONDS = 2.0
#: The cache: fresh for a second, then stale-if-error for two more.
FRESH_SECONDS, STALE_SECONDS = 1.0, 2.0
FJORDVIK_PATIENTS = [p for p in sandbox_patients() if p.municipality == "4699"]
BJORKEDAL_PATIENTS = [p for p in sandbox_patients() if p.municipality == "3499"]
MD = common_pb2.SERVICE_CODE_MD
TA = common_pb2.SERVICE_CODE_TA


def with_service(patients: list[SeedPatient], service_type: str) -> list[SeedPatient]:
    return [p for p in patients if service_type in p.active_service_types]


def without_service(patients: list[SeedPatient], service_type: str) -> list[SeedPatient]:
    return [p for p in patients if service_type not in p.active_service_types]


@dataclass
class Hub(hubs.Hub):
    """The seeded hub with ingest (the open-alarm query) and lookup; `env` is lookup's."""

    ingest: ServiceProcess
    lookup: ServiceProcess

    def vendor(
        self, system: SandboxVendorSystem, scope: str = Scopes.LOOKUP, request_id: str = ""
    ) -> Metadata:
        token = self.issuer.vendor_token(
            system.client_ids[0], [scope], organization_number=system.vendor_organization_number
        )
        metadata = self.bearer(token)
        if request_id:
            metadata += (("x-request-id", request_id),)
        return metadata


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_env: dict[str, str],
    dev_issuer: DevelopmentIssuer,
) -> Iterator[Hub]:
    folder = tmp_path_factory.mktemp("lookup-hub")
    databases = postgres_database() if request.param == "postgresql" else nullcontext(None)
    with databases as postgres:

        def database(name: str) -> str:
            return postgres or f"sqlite+aiosqlite:///{folder / f'{name}.db'}"

        with started_hub(folder, auth_env, dev_issuer, database=database) as base:
            env = dict(base.env)
            ingest = ServiceProcess(
                "ingest",
                {**env, "VKP_DB_URL": database("ingest"), "VKP_JOURNALING_TARGET": NOWHERE},
            )
            started = [ingest]
            try:
                ingest.wait_serving()
                env |= {
                    "VKP_INGEST_TARGET": ingest.address,
                    "VKP_LOOKUP_ALARM_GRACE_SECONDS": str(GRACE_SECONDS),
                    "VKP_LOOKUP_EPJ_DEADLINE_SECONDS": "1",
                    "VKP_LOOKUP_CACHE_TTL_SECONDS": str(FRESH_SECONDS),
                    "VKP_LOOKUP_CACHE_SERVICE_TTL_SECONDS": str(FRESH_SECONDS),
                    "VKP_CACHE_STALE_SECONDS": str(STALE_SECONDS),
                }
                lookup = ServiceProcess("lookup", env)
                started.append(lookup)
                lookup.wait_serving()
                yield Hub(base.epj, base.registry, base.audit, dev_issuer, env, ingest, lookup)
            finally:
                stop_all(*started)


@pytest.fixture
async def stub(hub: Hub) -> AsyncIterator[lookup_pb2_grpc.LookupServiceAsyncStub]:
    async with grpc.aio.insecure_channel(hub.lookup.address) as channel:
        yield lookup_pb2_grpc.LookupServiceStub(channel)


@pytest.fixture
async def epj(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with simulator_client(hub.epj) as client:
        yield client


def new_cache_keys() -> dict[str, str]:
    """Cache keys new to a test (nothing of it is cached under them), and fresh a minute."""
    return {
        "VKP_CACHE_HASH_KEY": base64.b64encode(os.urandom(32)).decode(),
        "VKP_CACHE_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "VKP_LOOKUP_CACHE_TTL_SECONDS": "60",
        "VKP_LOOKUP_CACHE_SERVICE_TTL_SECONDS": "60",
    }


def new_request_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def national_id(patient: SeedPatient) -> common_pb2.NationalId:
    return common_pb2.NationalId(value=patient.national_id)


def reason_of(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[str, str]:
    info = error_info(caught.value)
    assert info is not None
    return caught.value.code().name, info.reason


async def records_of(hub: Hub, municipality: str, request_id: str) -> list[audit_pb2.AuditRecord]:
    """The audit records of one lookup call, by its request id (newest first)."""
    found: list[audit_pb2.AuditRecord] = []
    async with grpc.aio.insecure_channel(hub.audit.address) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        token = ""
        while True:
            page = await audit.Query(
                audit_pb2.QueryRequest(municipality=municipality, page_size=1000, page_token=token),
                metadata=hub.reader(municipality),
            )
            found += [r for r in page.records if r.request_id == request_id]
            token = page.next_page_token
            if not token:
                return found


async def one_record(hub: Hub, municipality: str, request_id: str) -> audit_pb2.AuditRecord:
    (record,) = await records_of(hub, municipality, request_id)
    return record


async def get_patient(
    stub: lookup_pb2_grpc.LookupServiceAsyncStub,
    hub: Hub,
    patient: SeedPatient,
    *,
    system: SandboxVendorSystem = DISPENSER,
    service_code: common_pb2.ServiceCode.ValueType = MD,
    municipality: str = FJORDVIK.organization_number,
    request_id: str = "",
) -> pb.GetPatientResponse:
    return await stub.GetPatient(
        pb.GetPatientRequest(
            municipality=municipality, service_code=service_code, patient=national_id(patient)
        ),
        metadata=hub.vendor(system, request_id=request_id),
    )


async def denial(
    stub: lookup_pb2_grpc.LookupServiceAsyncStub, hub: Hub, patient: SeedPatient, **kwargs: Any
) -> tuple[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get_patient(stub, hub, patient, **kwargs)
    return reason_of(caught)


# -- answers -------------------------------------------------------------------------------------


async def test_the_recipients_of_a_service_are_listed_page_by_page_each_page_audited(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    expected = {p.national_id for p in with_service(FJORDVIK_PATIENTS, "27")}
    assert len(expected) >= 3
    listed: list[str] = []
    token, request_ids = "", []
    while True:
        request_id = new_request_id()
        request_ids.append(request_id)
        page = await stub.ListServiceRecipients(
            pb.ListServiceRecipientsRequest(
                municipality=FJORDVIK.organization_number,
                service_code=MD,
                page_size=2,
                page_token=token,
            ),
            metadata=hub.vendor(DISPENSER, request_id=request_id),
        )
        assert len(page.recipients) <= 2
        for recipient in page.recipients:
            listed.append(recipient.national_id.value)
            assert recipient.name.family
            assert {s.type.code for s in recipient.services} == {"27"}
            assert all(s.status == pb.SERVICE_STATUS_ACTIVE for s in recipient.services)
        assert not page.freshness.stale
        token = page.next_page_token
        if not token:
            break
    assert sorted(listed) == sorted(expected)  # each once, no one else
    for request_id in request_ids:
        record = await one_record(hub, FJORDVIK.organization_number, request_id)
        assert record.action == audit_pb2.AUDIT_ACTION_QUERY
        assert record.outcome == audit_pb2.AUDIT_OUTCOME_ALLOWED
        assert record.resource == "/vkp.lookup.v1.LookupService/ListServiceRecipients"
        assert (record.access_basis, record.outcome_reason) == ("SERVICE_NEED", "")
    named = [
        p.value
        for r in request_ids
        for p in (await one_record(hub, FJORDVIK.organization_number, r)).patients
    ]
    assert sorted(named) == sorted(expected)


async def test_a_patient_with_the_service_is_found_with_the_rule_and_the_episode_that_allowed_it(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    patient = with_service(FJORDVIK_PATIENTS, "27")[0]
    episode = next(s for s in patient.services if s.active and s.type_code == "27")
    request_id = new_request_id()
    answer = await get_patient(stub, hub, patient, request_id=request_id)
    assert answer.patient.national_id.value == patient.national_id
    assert answer.patient.name.family == patient.family
    assert answer.patient.address.access_hint == patient.address.access_hint
    assert answer.patient.zone == patient.address.zone
    assert answer.patient.household == patient.household
    assert answer.basis.rule == pb.ACCESS_RULE_SERVICE_NEED
    assert answer.basis.episode_id == episode.id
    assert answer.basis.service_type.code == "27"
    assert answer.basis.agreement
    assert not answer.freshness.stale
    assert answer.freshness.HasField("fetch_time")
    record = await one_record(hub, FJORDVIK.organization_number, request_id)
    assert record.outcome == audit_pb2.AUDIT_OUTCOME_ALLOWED
    assert record.action == audit_pb2.AUDIT_ACTION_READ
    assert [p.value for p in record.patients] == [patient.national_id]
    assert record.access_basis == f"SERVICE_NEED EpisodeOfCare/{episode.id}"
    assert record.outcome_reason == ""
    assert record.actor.vendor_system == DISPENSER.name
    assert not record.stale_data


async def test_services_and_todays_visit_plan_of_a_patient_with_the_service(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    patient = next(p for p in with_service(FJORDVIK_PATIENTS, "27") if p.visits)
    metadata = hub.vendor(DISPENSER)
    services = await stub.GetServices(
        pb.GetServicesRequest(
            municipality=FJORDVIK.organization_number, service_code=MD, patient=national_id(patient)
        ),
        metadata=metadata,
    )
    assert sorted(s.type.code for s in services.services) == sorted(
        s.type_code for s in patient.services
    )
    plan = await stub.GetVisitPlan(
        pb.GetVisitPlanRequest(
            municipality=FJORDVIK.organization_number, service_code=MD, patient=national_id(patient)
        ),
        metadata=metadata,
    )
    assert [v.activity for v in plan.visits] == [v.description for v in patient.visits]
    assert plan.basis.rule == pb.ACCESS_RULE_SERVICE_NEED
    another_day = await stub.GetVisitPlan(
        pb.GetVisitPlanRequest(
            municipality=FJORDVIK.organization_number,
            service_code=MD,
            patient=national_id(patient),
            date="2020-01-01",
        ),
        metadata=metadata,
    )
    assert list(another_day.visits) == []


# -- denials -------------------------------------------------------------------------------------


async def test_a_patient_without_the_service_is_denied_missing_active_service(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    patient = without_service(FJORDVIK_PATIENTS, "27")[0]
    request_id = new_request_id()
    assert await denial(stub, hub, patient, request_id=request_id) == (
        "PERMISSION_DENIED",
        "MISSING_ACTIVE_SERVICE",
    )
    record = await one_record(hub, FJORDVIK.organization_number, request_id)
    assert record.outcome == audit_pb2.AUDIT_OUTCOME_DENIED
    assert record.outcome_reason == "MISSING_ACTIVE_SERVICE"
    assert record.access_basis == ""
    assert [p.value for p in record.patients] == [patient.national_id]


async def test_vendors_without_an_agreement_for_lookup_are_denied(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    nordheim = [p for p in sandbox_patients() if p.municipality == "5099"]
    no_agreement, not_lookup = new_request_id(), new_request_id()
    assert await denial(
        stub,
        hub,
        with_service(nordheim, "28")[0],
        system=SUPERVISION,
        service_code=common_pb2.SERVICE_CODE_DT,
        municipality=NORDHEIM.organization_number,
        request_id=no_agreement,
    ) == ("PERMISSION_DENIED", "NO_ACCESS")
    assert await denial(  # its agreement is for journaling only
        stub,
        hub,
        with_service(FJORDVIK_PATIENTS, "DHO")[0],
        system=HOME_FOLLOW_UP,
        service_code=common_pb2.SERVICE_CODE_DHO,
        request_id=not_lookup,
    ) == ("PERMISSION_DENIED", "NOT_ALLOWED")
    first = await one_record(hub, NORDHEIM.organization_number, no_agreement)
    second = await one_record(hub, FJORDVIK.organization_number, not_lookup)
    assert (first.outcome, first.outcome_reason) == (audit_pb2.AUDIT_OUTCOME_DENIED, "NO_ACCESS")
    assert (second.outcome, second.outcome_reason) == (
        audit_pb2.AUDIT_OUTCOME_DENIED,
        "NOT_ALLOWED",
    )


async def test_a_synthetic_or_broken_national_id_is_refused_before_anything_is_read(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPatient(
            pb.GetPatientRequest(
                municipality=FJORDVIK.organization_number,
                service_code=MD,
                patient=common_pb2.NationalId(value="12345678901"),
            ),
            metadata=hub.vendor(DISPENSER),
        )
    assert reason_of(caught) == ("INVALID_ARGUMENT", "INVALID_NATIONAL_ID")


async def test_a_valid_national_id_the_epj_does_not_have_is_patient_not_found_and_audited(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    known = {p.national_id for p in sandbox_patients()}
    stranger = next(p for p in TEST_PEOPLE if p.national_id not in known)
    request_id = new_request_id()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPatient(
            pb.GetPatientRequest(
                municipality=FJORDVIK.organization_number,
                service_code=MD,
                patient=common_pb2.NationalId(value=stranger.national_id),
            ),
            metadata=hub.vendor(DISPENSER, request_id=request_id),
        )
    assert reason_of(caught) == ("NOT_FOUND", "PATIENT_NOT_FOUND")
    record = await one_record(hub, FJORDVIK.organization_number, request_id)
    assert (record.outcome, record.outcome_reason) == (
        audit_pb2.AUDIT_OUTCOME_FAILED,
        "PATIENT_NOT_FOUND",
    )
    assert [p.value for p in record.patients] == [stranger.national_id]


# -- the alarm window ----------------------------------------------------------------------------


async def _alarm_step(hub: Hub, patient: SeedPatient, alarm_id: str, *, closes: bool) -> None:
    event = sample_event(
        "alarm_step",
        event_id=f"evt-{uuid.uuid4().hex[:12]}",
        national_id=patient.national_id,
        at=datetime.now(UTC) - timedelta(seconds=5),
    )
    event.municipality = FJORDVIK.organization_number
    event.alarm_step.alarm_id = alarm_id
    event.alarm_step.closes_alarm = closes
    if closes:
        event.alarm_step.timeline_code = "7"
        event.occurred_time.CopyFrom(timestamp(datetime.now(UTC) - timedelta(seconds=1)))
    async with grpc.aio.insecure_channel(hub.ingest.address) as channel:
        await ingest_pb2_grpc.IngestServiceStub(channel).SubmitEvent(
            ingest_pb2.SubmitEventRequest(event=event),
            metadata=hub.vendor(RESPONSE_CENTRE, Scopes.INGEST),
        )


async def _alarm_context(
    stub: lookup_pb2_grpc.LookupServiceAsyncStub,
    hub: Hub,
    patient: SeedPatient,
    alarm_id: str,
    request_id: str,
) -> pb.GetAlarmContextResponse:
    return await stub.GetAlarmContext(
        pb.GetAlarmContextRequest(
            municipality=FJORDVIK.organization_number,
            service_code=TA,
            patient=national_id(patient),
            alarm_id=alarm_id,
        ),
        metadata=hub.vendor(RESPONSE_CENTRE, request_id=request_id),
    )


async def _alarm_denial(
    stub: lookup_pb2_grpc.LookupServiceAsyncStub, hub: Hub, patient: SeedPatient, alarm_id: str
) -> tuple[tuple[str, str], audit_pb2.AuditRecord]:
    request_id = new_request_id()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _alarm_context(stub, hub, patient, alarm_id, request_id)
    return reason_of(caught), await one_record(hub, FJORDVIK.organization_number, request_id)


async def test_alarm_context_only_while_the_alarm_is_open_and_within_the_grace_after(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    patient = next(p for p in with_service(FJORDVIK_PATIENTS, "6") if p.visits)
    alarm_id = f"alarm-{uuid.uuid4().hex[:10]}"

    reason, record = await _alarm_denial(stub, hub, patient, alarm_id)
    assert reason == ("PERMISSION_DENIED", "NO_OPEN_ALARM"), "before the alarm"
    assert (record.outcome, record.outcome_reason) == (
        audit_pb2.AUDIT_OUTCOME_DENIED,
        "NO_OPEN_ALARM",
    )
    assert record.purpose.alarm_id == alarm_id

    await _alarm_step(hub, patient, alarm_id, closes=False)
    request_id = new_request_id()
    answer = await _alarm_context(stub, hub, patient, alarm_id, request_id)
    context = answer.context
    assert answer.basis.rule == pb.ACCESS_RULE_OPEN_ALARM
    assert answer.basis.service_type.code == "6"
    assert context.patient.address.access_hint == patient.address.access_hint
    assert context.patient.door_lock_system == (patient.address.door_lock or "")
    assert [k.phones[0] for k in context.next_of_kin] == [k.phone for k in patient.next_of_kin]
    assert [k.relationship for k in context.next_of_kin] == [
        k.relationship_display for k in patient.next_of_kin
    ]
    assert context.general_practitioner.phones == [patient.gp.phone]
    assert [v.activity for v in context.visits] == [v.description for v in patient.visits]
    assert {s.type.code for s in context.services} == set(patient.active_service_types)
    assert len(context.critical_information) == len(patient.allergies) + len(patient.warnings)
    record = await one_record(hub, FJORDVIK.organization_number, request_id)
    assert record.outcome == audit_pb2.AUDIT_OUTCOME_ALLOWED
    assert record.access_basis.startswith("OPEN_ALARM EpisodeOfCare/")
    assert record.outcome_reason == ""

    await _alarm_step(hub, patient, alarm_id, closes=True)
    request_id = new_request_id()
    within = await _alarm_context(stub, hub, patient, alarm_id, request_id)
    assert within.basis.rule == pb.ACCESS_RULE_ALARM_GRACE
    assert (
        await one_record(hub, FJORDVIK.organization_number, request_id)
    ).access_basis.startswith("ALARM_GRACE ")

    await asyncio.sleep(GRACE_SECONDS + 0.5)
    reason, record = await _alarm_denial(stub, hub, patient, alarm_id)
    assert reason == ("PERMISSION_DENIED", "NO_OPEN_ALARM"), "after the grace period"
    assert record.outcome == audit_pb2.AUDIT_OUTCOME_DENIED


async def test_another_patients_alarm_opens_nothing(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    alarmed, other = with_service(FJORDVIK_PATIENTS, "6")[:2]
    alarm_id = f"alarm-{uuid.uuid4().hex[:10]}"
    await _alarm_step(hub, alarmed, alarm_id, closes=False)
    reason, _ = await _alarm_denial(stub, hub, other, alarm_id)
    assert reason == ("PERMISSION_DENIED", "NO_OPEN_ALARM")


# -- the registry's changes ----------------------------------------------------------------------


async def _applied_revision(process: ServiceProcess) -> int:
    found = re.findall(r'"applied_revision": (\d+)', process.logs())
    return max((int(n) for n in found), default=0)


async def test_a_revoked_agreement_is_denied_once_lookup_has_applied_the_revocation(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    patient = with_service(BJORKEDAL_PATIENTS, "27")[0]
    municipality = BJORKEDAL.organization_number
    await get_patient(stub, hub, patient, municipality=municipality)  # allowed, decision kept
    async with grpc.aio.insecure_channel(hub.registry.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        agreement_id = f"{DISPENSER.vendor_organization_number}-{DISPENSER.system_id}"
        name = f"municipalities/{municipality}/agreements/{agreement_id}"
        agreement = (
            await registry.GetAgreement(
                registry_pb2.GetAgreementRequest(name=name), metadata=hub.admin
            )
        ).agreement
        revoke = registry_pb2.UpdateAgreementRequest(
            agreement=registry_pb2.Agreement(
                name=agreement.name, state=registry_pb2.AGREEMENT_STATE_REVOKED
            )
        )
        revoke.update_mask.paths.append("state")
        revoked = (await registry.UpdateAgreement(revoke, metadata=hub.admin)).agreement
    try:
        for _ in range(100):
            if await _applied_revision(hub.lookup) >= revoked.revision:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("lookup never applied the revocation")
        request_id = new_request_id()
        assert await denial(
            stub, hub, patient, municipality=municipality, request_id=request_id
        ) == ("PERMISSION_DENIED", "NOT_ACTIVE")
        record = await one_record(hub, municipality, request_id)
        assert (record.outcome, record.outcome_reason) == (
            audit_pb2.AUDIT_OUTCOME_DENIED,
            "NOT_ACTIVE",
        )
    finally:
        async with grpc.aio.insecure_channel(hub.registry.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            restore = registry_pb2.UpdateAgreementRequest(
                agreement=registry_pb2.Agreement(
                    name=agreement.name, state=registry_pb2.AGREEMENT_STATE_ACTIVE
                )
            )
            restore.update_mask.paths.append("state")
            await registry.UpdateAgreement(restore, metadata=hub.admin)


# -- failures ------------------------------------------------------------------------------------


async def test_an_epj_that_is_down_or_too_slow_fails_the_lookup_and_is_audited(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub, epj: httpx.AsyncClient
) -> None:
    patient = with_service(FJORDVIK_PATIENTS, "27")[1]
    down, slow = new_request_id(), new_request_id()
    (await epj.put("/_control/4699/faults", json={"outage": True})).raise_for_status()
    assert await denial(stub, hub, patient, request_id=down) == ("UNAVAILABLE", "EPJ_UNAVAILABLE")
    (await epj.put("/_control/4699/faults", json={"latency_ms": 3000})).raise_for_status()
    assert await denial(stub, hub, patient, request_id=slow) == (
        "DEADLINE_EXCEEDED",
        "EPJ_TIMEOUT",
    )
    for request_id, reason in ((down, "EPJ_UNAVAILABLE"), (slow, "EPJ_TIMEOUT")):
        record = await one_record(hub, FJORDVIK.organization_number, request_id)
        assert (record.outcome, record.outcome_reason) == (audit_pb2.AUDIT_OUTCOME_FAILED, reason)


async def test_while_the_epj_is_down_cached_data_is_served_flagged_stale_within_the_bound(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub, epj: httpx.AsyncClient
) -> None:
    patient = with_service(FJORDVIK_PATIENTS, "27")[2]
    fresh = await get_patient(stub, hub, patient)
    assert not fresh.freshness.stale
    await asyncio.sleep(FRESH_SECONDS + 0.2)  # past its fresh TTL
    (await epj.put("/_control/4699/faults", json={"outage": True})).raise_for_status()
    request_id = new_request_id()
    stale = await get_patient(stub, hub, patient, request_id=request_id)
    assert stale.freshness.stale
    assert stale.freshness.cache_age.ToTimedelta() >= timedelta(seconds=FRESH_SECONDS)
    assert stale.patient.national_id.value == patient.national_id
    record = await one_record(hub, FJORDVIK.organization_number, request_id)
    assert (record.outcome, record.stale_data) == (audit_pb2.AUDIT_OUTCOME_ALLOWED, True)
    await asyncio.sleep(STALE_SECONDS)  # past the stale bound too
    request_id = new_request_id()
    assert await denial(stub, hub, patient, request_id=request_id) == (
        "UNAVAILABLE",
        "EPJ_UNAVAILABLE",
    )
    record = await one_record(hub, FJORDVIK.organization_number, request_id)
    assert (record.outcome, record.stale_data) == (audit_pb2.AUDIT_OUTCOME_FAILED, False)


async def test_two_lookup_replicas_sharing_redis_fetch_an_uncached_patient_once(
    hub: Hub, epj: httpx.AsyncClient
) -> None:
    patient = with_service(FJORDVIK_PATIENTS, "27")[3]
    env = {**hub.env, **new_cache_keys()}  # the replicas share them
    replicas = [ServiceProcess("lookup", env) for _ in range(2)]
    try:
        for replica in replicas:
            replica.wait_serving()
        (await epj.delete("/_control/counters")).raise_for_status()
        channels = [grpc.aio.insecure_channel(r.address) for r in replicas]
        try:
            stubs = [lookup_pb2_grpc.LookupServiceStub(c) for c in channels]
            answers = await asyncio.gather(
                *(get_patient(stub, hub, patient) for stub in stubs for _ in range(100))
            )
        finally:
            for channel in channels:
                await channel.close()
        assert {a.patient.national_id.value for a in answers} == {patient.national_id}
        counters = (await epj.get("/_control/counters")).json()
        assert counters.get("4699 Patient identifier") == 1, counters
        assert counters.get("4699 EpisodeOfCare patient") == 1, counters
    finally:
        stop_all(*replicas)


async def _counted(epj: httpx.AsyncClient, counter: str) -> int:
    counters: dict[str, int] = (await epj.get("/_control/counters")).json()
    return counters.get(counter, 0)


async def test_a_killed_lock_holder_holds_up_the_other_replica_until_its_locks_ttl(
    hub: Hub, epj: httpx.AsyncClient
) -> None:
    patient = with_service(FJORDVIK_PATIENTS, "27")[1]
    counter = "4699 Patient identifier"
    # The lock of a fill lives the EPJ deadline (1 s here) plus this margin.
    env = {**hub.env, **new_cache_keys(), "VKP_CACHE_LOCK_MARGIN_SECONDS": "1"}
    holder, other = ServiceProcess("lookup", env), ServiceProcess("lookup", env)
    redis = Redis.from_url(REDIS_URL)
    try:
        holder.wait_serving()
        other.wait_serving()
        (await epj.delete("/_control/counters")).raise_for_status()
        # Slow, but within the deadline: the holder is mid-fetch for 0.6 s.
        (await epj.put("/_control/4699/faults", json={"latency_ms": 600})).raise_for_status()
        async with grpc.aio.insecure_channel(holder.address) as channel:
            asked = asyncio.create_task(
                get_patient(lookup_pb2_grpc.LookupServiceStub(channel), hub, patient)
            )
            pattern = hub.env["VKP_REDIS_KEY_PREFIX"] + "cache-lock:patient:*"
            for _ in range(200):
                locks = [k async for k in redis.scan_iter(match=pattern)]
                if locks and await _counted(epj, counter) == 1:
                    break  # the lock taken and the Patient search in the simulator
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the holder never took the lock and fetched")
            (lock,) = locks
            read_at = asyncio.get_running_loop().time()
            left_ms = await redis.pttl(lock)
            assert 1000 < left_ms <= 2000
            holder.process.kill()  # SIGKILL, mid-fetch: its lock is never released
            holder.process.wait(10)
            expires_at = read_at + left_ms / 1000
            with pytest.raises(grpc.aio.AioRpcError):
                await asked
        async with grpc.aio.insecure_channel(other.address) as channel:
            loop = asyncio.get_running_loop()
            answering = asyncio.create_task(
                get_patient(lookup_pb2_grpc.LookupServiceStub(channel), hub, patient)
            )
            await asyncio.sleep(expires_at - 0.2 - loop.time())
            assert not answering.done()
            assert await _counted(epj, counter) == 1, "fetched before the lock's TTL"
            answer = await answering
            answered_at = loop.time()
        assert answer.patient.national_id.value == patient.national_id
        assert answered_at >= expires_at
        assert await _counted(epj, counter) == 2  # the dead holder's, and the other's after
    finally:
        await redis.aclose()
        holder.kill()
        stop_all(other)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def test_redis_holds_no_national_id_name_or_address_of_a_looked_up_patient(
    hub: Hub, stub: lookup_pb2_grpc.LookupServiceAsyncStub
) -> None:
    patient = with_service(FJORDVIK_PATIENTS, "27")[0]
    await get_patient(stub, hub, patient)
    await stub.GetVisitPlan(
        pb.GetVisitPlanRequest(
            municipality=FJORDVIK.organization_number, service_code=MD, patient=national_id(patient)
        ),
        metadata=hub.vendor(DISPENSER),
    )
    redis = Redis.from_url(REDIS_URL)
    try:
        prefix = hub.env["VKP_REDIS_KEY_PREFIX"]
        keys = [_bytes(k) async for k in redis.scan_iter(match=prefix + "cache*")]
        assert keys, "nothing was cached"
        values = [_bytes(v) for v in await redis.mget(keys) if v is not None]
    finally:
        await redis.aclose()
    stored = b"\n".join([*keys, *values])
    for secret in (
        patient.national_id.encode(),
        base64.b64encode(patient.national_id.encode()),
        patient.family.encode(),
        patient.address.line.encode(),
    ):
        assert secret not in stored


async def test_without_the_audit_service_no_lookup_is_answered(hub: Hub, tmp_path: Path) -> None:
    lookup = ServiceProcess("lookup", {**hub.env, "VKP_AUDIT_TARGET": NOWHERE})
    try:
        lookup.wait_serving()
        async with grpc.aio.insecure_channel(lookup.address) as channel:
            stub = lookup_pb2_grpc.LookupServiceStub(channel)
            allowed = with_service(FJORDVIK_PATIENTS, "27")[0]
            denied = without_service(FJORDVIK_PATIENTS, "27")[0]
            for patient in (allowed, denied):
                assert await denial(stub, hub, patient) == ("UNAVAILABLE", "AUDIT_UNAVAILABLE")
    finally:
        stop_all(lookup)
