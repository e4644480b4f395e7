"""Ingest end to end, on SQLite and on PostgreSQL, over real processes: the registry seeded with
the sandbox (its agreements decide), the audit service, journaling (where the relay delivers), and
ingest itself — validation, authorization, idempotency, crashes, a journaling outage, and the
alarms' state CheckOpenAlarm answers from."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp.common.v1 import common_pb2, event_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp.journaling.v1 import journaling_pb2, journaling_pb2_grpc
from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_epj_sim import sandbox_patients, select_patients
from vkp_ingest import store as store_tables
from vkp_ingest.domain.alarm import Alarm, AlarmStep, with_step
from vkp_ingest.domain.model import Incoming, Registration, content_hash
from vkp_ingest.relay import JournalingRelay
from vkp_ingest.settings import IngestSettings
from vkp_ingest.store import IngestStore
from vkp_lib.db import Database
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.national_id import check_digits, synthetic_organization_number
from vkp_lib.sandbox import (
    DISPENSER,
    FJORDVIK,
    HOME_FOLLOW_UP,
    NORDHEIM,
    RESPONSE_CENTRE,
    SUPERVISION,
    SandboxVendorSystem,
)
from vkp_lib.status import bad_request, error_info
from vkp_lib.testing import hubs
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.hubs import Metadata, started_hub
from vkp_lib.testing.processes import ServiceProcess, stop_all

VENDOR_OF_KIND = {
    "medication_dispense": DISPENSER,
    "dispenser_alert": DISPENSER,
    "supervision": SUPERVISION,
    "alarm_step": RESPONSE_CENTRE,
    "home_measurement": HOME_FOLLOW_UP,
}


@dataclass
class Hub(hubs.Hub):
    """The seeded hub with journaling (where the relay delivers) and ingest, and their
    environments (a test restarts them)."""

    journaling: ServiceProcess
    ingest: ServiceProcess
    ingest_env: dict[str, str]
    journaling_env: dict[str, str]

    def vendor(self, system: SandboxVendorSystem) -> Metadata:
        token = self.issuer.vendor_token(
            system.client_ids[0],
            [Scopes.INGEST],
            organization_number=system.vendor_organization_number,
        )
        return self.bearer(token)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_env: dict[str, str],
    dev_issuer: DevelopmentIssuer,
    postgres_url: str,
) -> Iterator[Hub]:
    folder = tmp_path_factory.mktemp("ingest-hub")

    def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{folder / f'{name}.db'}"

    # The EPJ endpoints point at a simulator of the test's own, where journaling delivers.
    with started_hub(folder, auth_env, dev_issuer) as base:
        env = base.env
        started: list[ServiceProcess] = []
        hub: Hub | None = None
        try:
            journaling_env = {**env, "VKP_DB_URL": sqlite("journaling")}
            journaling = ServiceProcess("journaling", journaling_env)
            started.append(journaling)
            journaling.wait_serving()
            database = sqlite("ingest") if request.param == "sqlite" else postgres_url
            ingest_env = {
                **env,
                "VKP_JOURNALING_TARGET": journaling.address,
                "VKP_DB_URL": database,
            }
            ingest = ServiceProcess("ingest", ingest_env)
            started.append(ingest)
            ingest.wait_serving()
            hub = Hub(
                base.epj,
                base.registry,
                base.audit,
                dev_issuer,
                env,
                journaling,
                ingest,
                ingest_env,
                journaling_env,
            )
            yield hub
        finally:
            stop_all(*started)
            if hub is not None:  # the processes a test restarted
                stop_all(hub.journaling, hub.ingest)


@pytest.fixture
async def stub(hub: Hub) -> AsyncIterator[ingest_pb2_grpc.IngestServiceAsyncStub]:
    async with grpc.aio.insecure_channel(hub.ingest.address) as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


def event_of(
    kind: str,
    *,
    person: int = 0,
    municipality: str = FJORDVIK.organization_number,
    minutes_ago: int = 5,
) -> event_pb2.Event:
    event = sample_event(
        kind,
        event_id=f"evt-{uuid.uuid4().hex[:12]}",
        national_id=TEST_PEOPLE[person].national_id,
        at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )
    event.municipality = municipality
    return event


def reason_of(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[str, str]:
    return reason_of_error(caught.value)


def reason_of_error(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    info = error_info(error)
    assert info is not None
    return error.code().name, info.reason


async def journal_entries(hub: Hub, national_id: str) -> list[journaling_pb2.Entry]:
    async with grpc.aio.insecure_channel(hub.journaling.address) as channel:
        found = await journaling_pb2_grpc.JournalingServiceStub(channel).ListEntries(
            journaling_pb2.ListEntriesRequest(
                municipality=FJORDVIK.organization_number,
                patient=common_pb2.NationalId(value=national_id),
                page_size=1000,
            ),
            metadata=hub.admin,
        )
    return list(found.entries)


async def wait_entries(hub: Hub, national_id: str, names: set[str], seconds: float = 20) -> None:
    ids = {n.removeprefix("events/") for n in names}
    for _ in range(int(seconds / 0.1)):
        found = {e.name.removeprefix("entries/") for e in await journal_entries(hub, national_id)}
        if ids <= found:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the events did not reach journaling")


async def submit_as_a_vendor_does(
    stub: ingest_pb2_grpc.IngestServiceAsyncStub, request: pb.SubmitEventRequest, metadata: Metadata
) -> pb.SubmitEventResponse:
    """SubmitEvent, once more after UNAVAILABLE REGISTRY_UNAVAILABLE, which is safe to retry
    (seen once, on a fresh process's first call, though the registry's log shows it answered)."""
    try:
        return await stub.SubmitEvent(request, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        if reason_of_error(exc) != ("UNAVAILABLE", "REGISTRY_UNAVAILABLE"):
            raise
    return await stub.SubmitEvent(request, metadata=metadata)


# -- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(VENDOR_OF_KIND))
async def test_a_valid_event_of_each_kind_is_registered(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub, kind: str
) -> None:
    event = event_of(kind)
    request = pb.SubmitEventRequest(event=event)
    answer = await submit_as_a_vendor_does(stub, request, hub.vendor(VENDOR_OF_KIND[kind]))
    receipt = answer.receipt
    assert (receipt.event_id, receipt.state, receipt.replayed) == (
        event.event_id,
        common_pb2.EVENT_STATE_REGISTERED,
        False,
    )
    assert receipt.name.startswith("events/")


# -- refused -----------------------------------------------------------------------------------


def _bad_check_digit(value: str) -> str:
    good = check_digits(value[:9])
    assert good is not None
    return value[:9] + good[0] + str((int(good[1]) + 1) % 10)


INVALID = {
    "a national id failing mod-11": (
        lambda e: setattr(e.patient, "value", _bad_check_digit(e.patient.value)),
        "INVALID_NATIONAL_ID",
        "event.patient.value",
    ),
    "a D-number stated for a fødselsnummer": (
        lambda e: setattr(e.patient, "type", common_pb2.NATIONAL_ID_TYPE_DNR),
        "NATIONAL_ID_TYPE_MISMATCH",
        "event.patient.type",
    ),
    "a time in the future": (
        lambda e: e.occurred_time.FromDatetime(datetime.now(UTC) + timedelta(hours=2)),
        "EVENT_IN_FUTURE",
        "event.occurred_time",
    ),
    "a time older than the window": (
        lambda e: e.occurred_time.FromDatetime(datetime.now(UTC) - timedelta(days=30)),
        "EVENT_TOO_OLD",
        "event.occurred_time",
    ),
    "a municipality whose check digit is wrong": (
        lambda e: setattr(e, "municipality", FJORDVIK.organization_number[:8] + "6"),
        "INVALID_ORGANIZATION_NUMBER",
        "event.municipality",
    ),
    "a code of another code system": (
        lambda e: setattr(e.home_measurement, "loinc_code", "4.1"),
        "INVALID_FORMAT",
        "event.home_measurement.loinc_code",
    ),
}


@pytest.mark.parametrize(("mutate", "reason", "field"), INVALID.values(), ids=INVALID.keys())
async def test_invalid_input_is_refused_with_its_reason(
    hub: Hub,
    stub: ingest_pb2_grpc.IngestServiceAsyncStub,
    mutate: Callable[[event_pb2.Event], object],
    reason: str,
    field: str,
) -> None:
    event = event_of("home_measurement")
    mutate(event)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitEvent(
            pb.SubmitEventRequest(event=event), metadata=hub.vendor(HOME_FOLLOW_UP)
        )
    assert reason_of(caught) == ("INVALID_ARGUMENT", reason)
    bad = bad_request(caught.value)
    assert bad is not None
    assert [v.field for v in bad.field_violations] == [field]


async def test_a_vendor_without_an_agreement_is_denied_with_the_registrys_reason(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    event = event_of("supervision", municipality=NORDHEIM.organization_number)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitEvent(pb.SubmitEventRequest(event=event), metadata=hub.vendor(SUPERVISION))
    assert reason_of(caught) == ("PERMISSION_DENIED", "NO_ACCESS")
    wrong_service = event_of("supervision")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitEvent(
            pb.SubmitEventRequest(event=wrong_service), metadata=hub.vendor(DISPENSER)
        )
    assert reason_of(caught) == ("PERMISSION_DENIED", "NOT_ALLOWED")


async def _denial_of(
    stub: ingest_pb2_grpc.IngestServiceAsyncStub, event: event_pb2.Event, metadata: Metadata
) -> tuple[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitEvent(pb.SubmitEventRequest(event=event), metadata=metadata)
    code, reason = reason_of(caught)
    assert code == "PERMISSION_DENIED"
    return reason, caught.value.details() or ""


async def _registry_update(hub: Hub, call: Callable[[Any], Awaitable[object]]) -> None:
    async with grpc.aio.insecure_channel(hub.registry.address) as channel:
        await call(registry_pb2_grpc.RegistryServiceStub(channel))


async def test_each_denial_says_what_its_reason_means(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    rng = random.Random(hub.ingest.port)
    suspended, revoked, unknown = (synthetic_organization_number(rng) for _ in range(3))

    async def arrange(registry: registry_pb2_grpc.RegistryServiceAsyncStub) -> None:
        for number, org in (("4601", suspended), ("4602", revoked)):
            await registry.CreateMunicipality(
                registry_pb2.CreateMunicipalityRequest(
                    municipality=registry_pb2.Municipality(
                        organization_number=org, municipality_number=number, display_name="Test"
                    )
                ),
                metadata=hub.admin,
            )
        suspend = registry_pb2.UpdateMunicipalityRequest(
            municipality=registry_pb2.Municipality(
                name=f"municipalities/{suspended}", state=registry_pb2.MUNICIPALITY_STATE_SUSPENDED
            )
        )
        suspend.update_mask.paths.append("state")
        await registry.UpdateMunicipality(suspend, metadata=hub.admin)
        agreement = await registry.CreateAgreement(
            registry_pb2.CreateAgreementRequest(
                parent=f"municipalities/{revoked}",
                agreement_id="dispenser",
                agreement=registry_pb2.Agreement(
                    vendor_system=DISPENSER.name,
                    service_codes=[common_pb2.SERVICE_CODE_MD],
                    actions=[registry_pb2.ACCESS_ACTION_JOURNAL],
                ),
            ),
            metadata=hub.admin,
        )
        revoke = registry_pb2.UpdateAgreementRequest(
            agreement=registry_pb2.Agreement(
                name=agreement.agreement.name, state=registry_pb2.AGREEMENT_STATE_REVOKED
            )
        )
        revoke.update_mask.paths.append("state")
        await registry.UpdateAgreement(revoke, metadata=hub.admin)

    await _registry_update(hub, arrange)
    stranger = hub.issuer.vendor_token("nobody-we-know", [Scopes.INGEST])
    dispense = "medication_dispense"
    denials = {
        "unknown client": await _denial_of(
            stub, event_of(dispense), (("authorization", f"Bearer {stranger}"),)
        ),
        "unknown municipality": await _denial_of(
            stub, event_of(dispense, municipality=unknown), hub.vendor(DISPENSER)
        ),
        "suspended municipality": await _denial_of(
            stub, event_of(dispense, municipality=suspended), hub.vendor(DISPENSER)
        ),
        "agreement not active": await _denial_of(
            stub, event_of(dispense, municipality=revoked), hub.vendor(DISPENSER)
        ),
        "no agreement": await _denial_of(
            stub,
            event_of("supervision", municipality=NORDHEIM.organization_number),
            hub.vendor(SUPERVISION),
        ),
        "service not in the agreement": await _denial_of(
            stub, event_of("supervision"), hub.vendor(DISPENSER)
        ),
    }
    assert denials == {
        "unknown client": (
            "UNKNOWN_ORGANIZATION",
            "this client id belongs to no vendor system registered with the hub",
        ),
        "unknown municipality": (
            "UNKNOWN_ORGANIZATION",
            "the municipality is not registered with the hub",
        ),
        "suspended municipality": ("NOT_ACTIVE", "the municipality is suspended in the hub"),
        "agreement not active": (
            "NOT_ACTIVE",
            "the municipality's agreement with this vendor system is not active "
            "(revoked, suspended, or outside its validity)",
        ),
        "no agreement": (
            "NO_ACCESS",
            "the municipality has no agreement with this vendor system",
        ),
        "service not in the agreement": (
            "NOT_ALLOWED",
            "the municipality's agreement with this vendor system does not allow it to "
            "journal service DT",
        ),
    }


async def test_a_batch_with_one_bad_event_registers_the_rest(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    events = [event_of("medication_dispense", person=i) for i in range(4)]
    events[2].patient.value = "123"
    answer = await stub.SubmitEvents(
        pb.SubmitEventsRequest(events=events), metadata=hub.vendor(DISPENSER)
    )
    kinds = [r.WhichOneof("outcome") for r in answer.results]
    assert kinds == ["receipt", "receipt", "error", "receipt"]
    error = answer.results[2].error
    assert (error.reason, error.code) == (
        "INVALID_NATIONAL_ID",
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
    )
    assert [v.field for v in error.field_violations] == ["events[2].patient.value"]


# -- exactly once ------------------------------------------------------------------------------


async def test_a_repeated_event_id_creates_one_event_and_one_journal_entry(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    person = 5
    event = event_of("home_measurement", person=person)
    request = pb.SubmitEventRequest(event=event)
    first = (await stub.SubmitEvent(request, metadata=hub.vendor(HOME_FOLLOW_UP))).receipt
    again = (await stub.SubmitEvent(request, metadata=hub.vendor(HOME_FOLLOW_UP))).receipt
    assert (again.name, again.replayed) == (first.name, True)
    concurrent = await asyncio.gather(
        *(stub.SubmitEvent(request, metadata=hub.vendor(HOME_FOLLOW_UP)) for _ in range(20))
    )
    assert {answer.receipt.name for answer in concurrent} == {first.name}
    other = pb.SubmitEventRequest()
    other.event.CopyFrom(event)
    other.event.home_measurement.value = 99
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitEvent(other, metadata=hub.vendor(HOME_FOLLOW_UP))
    assert reason_of(caught) == ("ALREADY_EXISTS", "EVENT_ID_REUSED")
    national_id = TEST_PEOPLE[person].national_id
    await wait_entries(hub, national_id, {first.name})
    await asyncio.sleep(0.5)  # give a wrong second entry the time to show
    entries = [e for e in await journal_entries(hub, national_id) if e.event_id == event.event_id]
    assert len(entries) == 1


async def test_an_event_sent_twice_in_one_batch_is_registered_once(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    event = event_of("medication_dispense", person=3)
    answer = await stub.SubmitEvents(
        pb.SubmitEventsRequest(events=[event, event]), metadata=hub.vendor(DISPENSER)
    )
    first, second = (r.receipt for r in answer.results)
    assert (second.name, first.replayed, second.replayed) == (first.name, False, True)


async def test_every_acknowledged_event_survives_a_sigkill_and_reaches_journaling_once(
    hub: Hub,
) -> None:
    person = 6
    sent = [event_of("home_measurement", person=person) for _ in range(30)]
    acknowledged: list[str] = []
    async with grpc.aio.insecure_channel(hub.ingest.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for start in range(0, len(sent), 10):
            answer = await stub.SubmitEvents(
                pb.SubmitEventsRequest(events=sent[start : start + 10]),
                metadata=hub.vendor(HOME_FOLLOW_UP),
            )
            acknowledged += [r.receipt.name for r in answer.results]
    hub.ingest.kill()  # right after the acknowledgements
    hub.ingest = ServiceProcess("ingest", hub.ingest_env)
    hub.ingest.wait_serving()
    async with grpc.aio.insecure_channel(hub.ingest.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for event, name in zip(sent, acknowledged, strict=True):
            status = await stub.GetEventStatus(
                pb.GetEventStatusRequest(event_id=event.event_id),
                metadata=hub.vendor(HOME_FOLLOW_UP),
            )
            assert status.status.name == name
    national_id = TEST_PEOPLE[person].national_id
    await wait_entries(hub, national_id, set(acknowledged))
    entries = await journal_entries(hub, national_id)
    ours = [e for e in entries if f"events/{e.name.removeprefix('entries/')}" in acknowledged]
    assert len(ours) == len(acknowledged)
    assert len({e.event_id for e in ours}) == len(acknowledged)


async def test_events_wait_while_journaling_is_down_and_go_once_it_is_back(hub: Hub) -> None:
    person = 7
    stop_all(hub.journaling)
    events = [event_of("home_measurement", person=person) for _ in range(5)]
    async with grpc.aio.insecure_channel(hub.ingest.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        answer = await stub.SubmitEvents(
            pb.SubmitEventsRequest(events=events), metadata=hub.vendor(HOME_FOLLOW_UP)
        )
        names = {r.receipt.name for r in answer.results}
        await asyncio.sleep(1.0)  # the relay tries, and waits
        status = await stub.GetEventStatus(
            pb.GetEventStatusRequest(event_id=events[0].event_id),
            metadata=hub.vendor(HOME_FOLLOW_UP),
        )
        assert status.status.state == common_pb2.EVENT_STATE_REGISTERED
    # Journaling is back (at a new port: ingest is restarted to find it; the events are durable).
    hub.journaling = ServiceProcess("journaling", hub.journaling_env)
    hub.journaling.wait_serving()
    hub.ingest_env["VKP_JOURNALING_TARGET"] = hub.journaling.address
    stop_all(hub.ingest)
    hub.ingest = ServiceProcess("ingest", hub.ingest_env)
    hub.ingest.wait_serving()
    await wait_entries(hub, TEST_PEOPLE[person].national_id, names)
    entries = await journal_entries(hub, TEST_PEOPLE[person].national_id)
    assert len([e for e in entries if f"events/{e.name.removeprefix('entries/')}" in names]) == 5


# -- status ------------------------------------------------------------------------------------


async def test_an_event_id_the_vendor_never_sent_is_event_not_found(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEventStatus(
            pb.GetEventStatusRequest(event_id=f"evt-{uuid.uuid4().hex[:12]}"),
            metadata=hub.vendor(DISPENSER),
        )
    assert reason_of(caught) == ("NOT_FOUND", "EVENT_NOT_FOUND")


async def test_the_status_of_an_event_follows_it_until_it_is_journaled(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    patient = select_patients(sandbox_patients(), municipality="4699", active="27")[0]
    event = event_of("dispenser_alert")
    event.patient.value = patient.national_id
    metadata = hub.vendor(DISPENSER)
    request = pb.SubmitEventRequest(event=event)
    receipt = (await submit_as_a_vendor_does(stub, request, metadata)).receipt
    states = []
    for _ in range(200):
        status = (
            await stub.GetEventStatus(
                pb.GetEventStatusRequest(event_id=event.event_id), metadata=metadata
            )
        ).status
        states.append(status.state)
        if status.state == common_pb2.EVENT_STATE_JOURNALED:
            break
        await asyncio.sleep(0.1)
    assert states[-1] == common_pb2.EVENT_STATE_JOURNALED
    assert (status.name, status.receive_time) == (receipt.name, receipt.receive_time)
    assert status.state_time.ToDatetime() >= receipt.receive_time.ToDatetime()


async def test_an_accepted_batch_and_a_denial_are_each_one_audit_record(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    batch = [event_of("dispenser_alert", person=p) for p in (0, 1)]
    await stub.SubmitEvents(pb.SubmitEventsRequest(events=batch), metadata=hub.vendor(DISPENSER))
    denied = event_of("supervision", person=2, municipality=NORDHEIM.organization_number)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.SubmitEvent(
            pb.SubmitEventRequest(event=denied), metadata=hub.vendor(SUPERVISION)
        )

    async def records(municipality: str, national_id: str) -> list[audit_pb2.AuditRecord]:
        reader = hub.issuer.vendor_token(
            "auditor", [Scopes.AUDIT_READ], organization_number=municipality
        )
        async with grpc.aio.insecure_channel(hub.audit.address) as channel:
            found = await audit_pb2_grpc.AuditServiceStub(channel).Query(
                audit_pb2.QueryRequest(
                    municipality=municipality,
                    patient=common_pb2.NationalId(value=national_id),
                    page_size=1000,
                ),
                metadata=(("authorization", f"Bearer {reader}"),),
            )
        return list(found.records)

    for _ in range(40):  # the accepted batch's record goes through the audit outbox
        allowed = [
            r
            for r in await records(FJORDVIK.organization_number, TEST_PEOPLE[1].national_id)
            if r.actor.client_id == DISPENSER.client_ids[0]
            and {p.value for p in r.patients}
            == {TEST_PEOPLE[0].national_id, TEST_PEOPLE[1].national_id}
        ]
        if allowed:
            break
        await asyncio.sleep(0.1)
    assert len(allowed) == 1
    assert allowed[0].outcome == audit_pb2.AUDIT_OUTCOME_ALLOWED
    refusals = [
        r
        for r in await records(NORDHEIM.organization_number, TEST_PEOPLE[2].national_id)
        if r.outcome == audit_pb2.AUDIT_OUTCOME_DENIED
    ]
    assert [r.outcome_reason for r in refusals][-1:] == ["NO_ACCESS"]


# -- the relay's outbox, on the store ------------------------------------------------------------


@dataclass
class RecordingJournaling:
    """Journaling's Enqueue, recording each call's items."""

    calls: list[list[journaling_pb2.EnqueueItem]]

    async def Enqueue(
        self, request: journaling_pb2.EnqueueRequest
    ) -> journaling_pb2.EnqueueResponse:
        self.calls.append(list(request.items))
        return journaling_pb2.EnqueueResponse()


async def registered_store(
    database_url: str, counts: dict[str, int]
) -> tuple[IngestStore, dict[str, list[str]]]:
    """A migrated ingest store with `counts[municipality]` events registered for each (one
    patient each), one registration per municipality in the order given; their event ids."""
    store = IngestStore(Database.from_url(database_url, name="ingest"))
    await store.db.start()
    await store.migrate()
    now = datetime.now(UTC)
    ids: dict[str, list[str]] = {}
    for person, (municipality, count) in enumerate(counts.items()):
        items = []
        for _ in range(count):
            event = event_of("home_measurement", person=person, municipality=municipality)
            data = event.SerializeToString(deterministic=True)
            hashed = content_hash(data)
            items.append(Incoming("v", event.event_id, "c", hashed, municipality, data, ""))
        await store.register_many([Registration(items, {})], now)
        ids[municipality] = [item.event_id for item in items]
    return store, ids


async def test_the_relay_sends_a_waiting_municipality_beside_another_ones_backlog_in_order(
    database_url: str,
) -> None:
    backlog, quiet = FJORDVIK.organization_number, NORDHEIM.organization_number
    store, ids = await registered_store(database_url, {backlog: 1200, quiet: 3})
    journaling = RecordingJournaling([])
    relay = JournalingRelay(store, journaling, IngestSettings(relay_batch=500))
    try:
        while await relay.send():
            pass
    finally:
        await store.db.close()
    assert [i.event.municipality for i in journaling.calls[0]].count(quiet) == 3
    assert all(len(call) <= 500 for call in journaling.calls)
    sent = [item for call in journaling.calls for item in call]
    assert len(sent) == len({item.entry_id for item in sent}) == 1203
    for municipality in (backlog, quiet):  # one patient each: in the order registered
        assert [i.event.event_id for i in sent if i.event.municipality == municipality] == ids[
            municipality
        ]


async def test_a_group_of_new_and_earlier_keys_stores_the_audit_records_of_new_events_only(
    database_url: str,
) -> None:
    fjordvik, nordheim = FJORDVIK.organization_number, NORDHEIM.organization_number

    def incoming(event_id: str, municipality: str, content: bytes = b"first") -> Incoming:
        return Incoming("v", event_id, "c", content_hash(content), municipality, content, "")

    store = IngestStore(Database.from_url(database_url, name="ingest"))
    await store.db.start()
    try:
        await store.migrate()
        now = datetime.now(UTC)
        await store.register_many([Registration([incoming("a", fjordvik)], {})], now)
        await store.register_many([Registration([incoming("b", nordheim)], {})], now)
        await store.db.write_sync(lambda c: c.execute(store_tables.audit_outbox.delete()))
        mixed = Registration(
            [incoming("new-1", fjordvik), incoming("a", fjordvik), incoming("b", nordheim, b"x")],
            {fjordvik: b"mixed's record of fjordvik", nordheim: b"mixed's record of nordheim"},
        )
        others = Registration(
            [incoming("new-2", nordheim), incoming("new-1", fjordvik)],
            {nordheim: b"others' record of nordheim", fjordvik: b"others' record of fjordvik"},
        )
        first, second = await store.register_many([mixed, others], now)
        assert [(r.new, r.replayed, r.reused) for r in first] == [
            (True, False, False),
            (False, True, False),
            (False, False, True),
        ]
        assert [(r.new, r.replayed) for r in second] == [(True, False), (False, True)]
        assert second[1].id == first[0].id
        owed = {record for _, record in await store.audit_pending(10)}
        assert owed == {b"mixed's record of fjordvik", b"others' record of nordheim"}
        async with store.db.read() as session:
            positions = list(
                await session.execute(
                    sa.select(
                        store_tables.events.c.event_id, store_tables.events.c.position
                    ).order_by(store_tables.events.c.position)
                )
            )
        assert [event_id for event_id, _ in positions] == ["a", "b", "new-1", "new-2"]
    finally:
        await store.db.close()


# -- alarms: their state, and CheckOpenAlarm ---------------------------------------------------


def alarm_step_of(
    alarm_id: str,
    at: datetime,
    *,
    person: int = 4,
    closes: bool = False,
    municipality: str = FJORDVIK.organization_number,
) -> event_pb2.Event:
    event = sample_event(
        "alarm_step",
        event_id=f"evt-{uuid.uuid4().hex[:12]}",
        national_id=TEST_PEOPLE[person].national_id,
        at=at,
    )
    event.municipality = municipality
    event.alarm_step.alarm_id = alarm_id
    event.alarm_step.closes_alarm = closes
    return event


async def check_open_alarm(
    hub: Hub,
    stub: ingest_pb2_grpc.IngestServiceAsyncStub,
    alarm_id: str,
    *,
    person: int = 4,
    municipality: str = FJORDVIK.organization_number,
    metadata: Metadata | None = None,
) -> pb.CheckOpenAlarmResponse:
    """CheckOpenAlarm as lookup asks it: with a hub service token, about the response centre's
    alarm."""
    token = hub.issuer.service_token("lookup")
    return await stub.CheckOpenAlarm(
        pb.CheckOpenAlarmRequest(
            vendor_system=RESPONSE_CENTRE.name,
            alarm_id=alarm_id,
            patient=common_pb2.NationalId(value=TEST_PEOPLE[person].national_id),
            municipality=municipality,
        ),
        metadata=metadata or (("authorization", f"Bearer {token}"),),
    )


def times_of(answer: pb.CheckOpenAlarmResponse) -> dict[str, datetime]:
    return {
        field.name: value.ToDatetime(tzinfo=UTC)
        for field, value in answer.ListFields()
        if field.name.endswith("_time")
    }


async def test_an_alarms_steps_out_of_order_and_twice_open_it_and_its_closing_step_closes_it(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    alarm_id = f"alarm-{uuid.uuid4().hex[:12]}"
    start = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=20)
    steps = [alarm_step_of(alarm_id, start + timedelta(minutes=m)) for m in (0, 2, 5, 9)]
    closing = alarm_step_of(alarm_id, start + timedelta(minutes=12), closes=True)
    vendor = hub.vendor(RESPONSE_CENTRE)
    assert times_of(await check_open_alarm(hub, stub, alarm_id)) == {}
    # The middle steps first, one by one, then a batch holding the others with a repeat in it,
    # then every step again.
    for step in (steps[2], steps[1]):
        await submit_as_a_vendor_does(stub, pb.SubmitEventRequest(event=step), vendor)
    await stub.SubmitEvents(
        pb.SubmitEventsRequest(events=[steps[3], steps[0], steps[3]]), metadata=vendor
    )
    again = await stub.SubmitEvents(pb.SubmitEventsRequest(events=steps), metadata=vendor)
    assert all(r.receipt.replayed for r in again.results)
    answer = await check_open_alarm(hub, stub, alarm_id)
    assert answer.open
    assert times_of(answer) == {
        "opened_time": start,
        "last_step_time": start + timedelta(minutes=9),
    }
    await stub.SubmitEvent(pb.SubmitEventRequest(event=closing), metadata=vendor)
    # A step that happened before the close but arrives after it leaves the alarm closed.
    late = alarm_step_of(alarm_id, start + timedelta(minutes=10))
    await stub.SubmitEvent(pb.SubmitEventRequest(event=late), metadata=vendor)
    await stub.SubmitEvent(pb.SubmitEventRequest(event=closing), metadata=vendor)  # again
    answer = await check_open_alarm(hub, stub, alarm_id)
    assert not answer.open
    assert times_of(answer) == {
        "opened_time": start,
        "last_step_time": start + timedelta(minutes=12),
        "closed_time": start + timedelta(minutes=12),
    }


async def test_an_alarm_is_not_seen_by_a_question_about_another_patient_or_municipality(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    alarm_id = f"alarm-{uuid.uuid4().hex[:12]}"
    at = datetime.now(UTC) - timedelta(minutes=3)
    await submit_as_a_vendor_does(
        stub, pb.SubmitEventRequest(event=alarm_step_of(alarm_id, at)), hub.vendor(RESPONSE_CENTRE)
    )
    assert (await check_open_alarm(hub, stub, alarm_id)).open
    for answer in (
        await check_open_alarm(hub, stub, alarm_id, person=2),
        await check_open_alarm(hub, stub, alarm_id, municipality=NORDHEIM.organization_number),
    ):
        assert answer == pb.CheckOpenAlarmResponse(open=False)


async def test_a_step_naming_another_patient_leaves_the_first_patients_alarm_as_it_was(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    alarm_id = f"alarm-{uuid.uuid4().hex[:12]}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    vendor = hub.vendor(RESPONSE_CENTRE)
    first = alarm_step_of(alarm_id, at)
    await submit_as_a_vendor_does(stub, pb.SubmitEventRequest(event=first), vendor)
    before = await check_open_alarm(hub, stub, alarm_id)
    for minutes, closes in ((-5, False), (4, True)):  # earlier, and a closing one
        stray = alarm_step_of(alarm_id, at + timedelta(minutes=minutes), person=2, closes=closes)
        answer = await stub.SubmitEvent(pb.SubmitEventRequest(event=stray), metadata=vendor)
        assert answer.receipt.state == common_pb2.EVENT_STATE_REGISTERED  # journaled as any
    assert await check_open_alarm(hub, stub, alarm_id) == before
    assert before.open
    assert times_of(before) == {"opened_time": at, "last_step_time": at}
    assert await check_open_alarm(hub, stub, alarm_id, person=2) == pb.CheckOpenAlarmResponse()


async def test_check_open_alarm_refuses_a_vendor_token_and_answers_a_hub_service(
    hub: Hub, stub: ingest_pb2_grpc.IngestServiceAsyncStub
) -> None:
    alarm_id = f"alarm-{uuid.uuid4().hex[:12]}"
    await submit_as_a_vendor_does(
        stub,
        pb.SubmitEventRequest(event=alarm_step_of(alarm_id, datetime.now(UTC))),
        hub.vendor(RESPONSE_CENTRE),
    )
    vendor = hub.issuer.vendor_token(
        RESPONSE_CENTRE.client_ids[0],
        [Scopes.INGEST, Scopes.LOOKUP, Scopes.ADMIN],
        organization_number=RESPONSE_CENTRE.vendor_organization_number,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check_open_alarm(
            hub, stub, alarm_id, metadata=(("authorization", f"Bearer {vendor}"),)
        )
    assert reason_of(caught) == ("PERMISSION_DENIED", "SERVICE_IDENTITY_REQUIRED")
    assert (await check_open_alarm(hub, stub, alarm_id)).open


def _alarm_step_incoming(event_id: str, step: AlarmStep, content: bytes | None = None) -> Incoming:
    data = content if content is not None else f"{event_id}".encode()
    return Incoming(
        step.vendor_system,
        event_id,
        "c",
        content_hash(data),
        step.municipality,
        data,
        "",
        alarm=step,
    )


def alarm_steps(patient: str, other: str) -> list[tuple[int, bool, str]]:
    """Steps of one alarm: (minute, closes, patient), two closing, two of another patient."""
    return [
        (4, False, patient),
        (0, False, patient),
        (7, True, patient),
        (5, True, patient),
        (11, False, patient),
        (-3, False, other),
        (2, True, other),
    ]


async def test_the_stores_alarm_state_is_the_domain_rule_over_the_new_steps_in_any_order(
    database_url: str,
) -> None:
    """The upsert of each dialect against domain/alarm.py's `with_step`, over steps that arrive
    shuffled, grouped or alone, repeated, and some of another patient; a reused event id (other
    content) is not a new step, so it changes nothing even where its content would."""
    start = datetime(2026, 11, 26, 12, 0, 0, 250_000, tzinfo=UTC)
    patient, other = TEST_PEOPLE[0].national_id, TEST_PEOPLE[1].national_id
    rng = random.Random(2026)
    store = IngestStore(Database.from_url(database_url, name="ingest"))
    await store.db.start()
    try:
        await store.migrate()
        for round_ in range(6):
            alarm_id = f"alarm-{round_}"

            steps = {
                f"{alarm_id}-{n}": AlarmStep(
                    RESPONSE_CENTRE.name,
                    alarm_id,
                    FJORDVIK.organization_number,
                    who,
                    "3",
                    start + timedelta(minutes=minute, microseconds=round_),
                    closes,
                )
                for n, (minute, closes, who) in enumerate(alarm_steps(patient, other))
            }
            arrivals = [*steps, *rng.sample(list(steps), 3)]
            rng.shuffle(arrivals)
            expected: Alarm | None = None
            seen: set[str] = set()
            position = 0
            while position < len(arrivals):  # groups of 1 to 3 registrations
                size = rng.randint(1, 3)
                group = arrivals[position : position + size]
                position += size
                await store.register_many(
                    [Registration([_alarm_step_incoming(e, steps[e])], {}) for e in group],
                    start,
                )
                for event_id in group:
                    if event_id not in seen:
                        seen.add(event_id)
                        expected = with_step(expected, steps[event_id])
            # A reused id: other content, the owner's step closing the alarm before all else.
            assert expected is not None
            reused = dataclasses.replace(
                steps[arrivals[0]],
                patient=expected.patient,
                occurred_time=start - timedelta(hours=1),
                closes=True,
            )
            await store.register_many(
                [Registration([_alarm_step_incoming(arrivals[0], reused, b"other")], {})], start
            )
            assert await store.find_alarm(RESPONSE_CENTRE.name, alarm_id) == expected
        assert await store.find_alarm(RESPONSE_CENTRE.name, "never-stepped") is None
    finally:
        await store.db.close()
