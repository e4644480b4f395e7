"""Journaling end to end, over real processes and real HTTP: the registry (seeded with the
sandbox, its EPJ endpoints on the simulator), the audit service, journaling, and the EPJ
simulator with its faults."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import httpx
import pytest

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp.common.v1 import common_pb2, event_pb2
from vkp.journaling.v1 import journaling_pb2 as pb
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_epj_sim import sandbox_patients
from vkp_journaling.render import NOTE_IDENTIFIER_SYSTEM, NoteContext, render_note
from vkp_lib.identity.permissions import Scopes
from vkp_lib.national_id import synthetic_national_id
from vkp_lib.sandbox import BJORKEDAL, DISPENSER, FJORDVIK
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.hubs import (
    Hub,
    hub_fixture,
    running_journaling,
    simulator_client,
    start_journaling,
)
from vkp_lib.testing.processes import ServiceProcess, stop_all

RENDERED = ("medication_dispense", "dispenser_alert", "supervision", "home_measurement")
RESOURCE_OF = {
    "medication_dispense": "MedicationDispense",
    "dispenser_alert": "DetectedIssue",
    "supervision": "Encounter",
    "home_measurement": "Observation",
}
#: Fast retries, so the tests see many attempts.
JOURNALING_ENV = {
    "VKP_JOURNALING_BACKOFF_BASE_SECONDS": "0.05",
    "VKP_JOURNALING_BACKOFF_MAX_SECONDS": "0.3",
    "VKP_JOURNALING_MAX_ATTEMPTS": "5",
    "VKP_JOURNALING_BREAKER_THRESHOLD": "3",
    "VKP_JOURNALING_BREAKER_COOLDOWN_SECONDS": "0.3",
    "VKP_JOURNALING_POLL_SECONDS": "0.05",
    "VKP_JOURNALING_LEASE_SECONDS": "5",
}
FJORDVIK_PATIENTS = [p for p in sandbox_patients() if p.municipality == "4699"]
BJORKEDAL_PATIENTS = [p for p in sandbox_patients() if p.municipality == "3499"]


hub = hub_fixture("journaling-hub", JOURNALING_ENV)


@pytest.fixture(scope="module")
def journaling(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('journaling') / 'journaling.db'}"
    with running_journaling(hub, url) as process:
        yield process


@pytest.fixture
async def epj(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with simulator_client(hub.epj) as client:
        yield client


def event_for(kind: str, patient: Any, municipality: str) -> event_pb2.Event:
    event = sample_event(kind, event_id=f"evt-{uuid.uuid4().hex[:12]}")
    event.municipality = municipality
    event.patient.value = patient.national_id
    return event


def item(event: event_pb2.Event, entry_id: str = "") -> pb.EnqueueItem:
    queued = pb.EnqueueItem(
        entry_id=entry_id or str(uuid.uuid4()),
        event=event,
        vendor_system=DISPENSER.name,
        client_id=DISPENSER.client_ids[0],
    )
    queued.receive_time.GetCurrentTime()
    return queued


async def enqueue(process: ServiceProcess, hub: Hub, items: list[pb.EnqueueItem]) -> None:
    async with grpc.aio.insecure_channel(process.address) as channel:
        stub = journaling_pb2_grpc.JournalingServiceStub(channel)
        await stub.Enqueue(pb.EnqueueRequest(items=items), metadata=hub.service)


async def entries(process: ServiceProcess, hub: Hub, ids: list[str]) -> list[pb.Entry]:
    async with grpc.aio.insecure_channel(process.address) as channel:
        stub = journaling_pb2_grpc.JournalingServiceStub(channel)
        return [
            (await stub.GetEntry(pb.GetEntryRequest(name=f"entries/{i}"), metadata=hub.admin)).entry
            for i in ids
        ]


async def wait_for(
    process: ServiceProcess,
    hub: Hub,
    ids: list[str],
    state: common_pb2.EventState.ValueType,
    seconds: float = 25,
) -> list[pb.Entry]:
    for _ in range(int(seconds / 0.1)):
        found = await entries(process, hub, ids)
        if all(e.state == state for e in found):
            return found
        await asyncio.sleep(0.1)
    states = [(common_pb2.EventState.Name(e.state), e.last_error_reason) for e in found]
    raise AssertionError(f"not all {common_pb2.EventState.Name(state)}: {states}")


async def notes(epj: httpx.AsyncClient, resource_type: str, entry_id: str) -> list[dict[str, Any]]:
    """The resources the EPJ holds with the note identifier `<entry_id>/1`."""
    response = await epj.get(
        f"/{resource_type}", params={"identifier": f"{NOTE_IDENTIFIER_SYSTEM}|{entry_id}/1"}
    )
    response.raise_for_status()
    return [e["resource"] for e in response.json().get("entry", [])]


async def set_faults(epj: httpx.AsyncClient, municipality: str, **faults: Any) -> None:
    response = await epj.put(f"/_control/{municipality}/faults", json=faults)
    response.raise_for_status()


def codings(resource: Any) -> set[tuple[str, str]]:
    """Every (system, code) in a resource."""
    found: set[tuple[str, str]] = set()
    if isinstance(resource, dict):
        if "system" in resource and "code" in resource:
            found.add((str(resource["system"]), str(resource["code"])))
        for value in resource.values():
            found |= codings(value)
    elif isinstance(resource, list):
        for value in resource:
            found |= codings(value)
    return found


# -- each kind ---------------------------------------------------------------------------------


async def test_each_kind_becomes_its_note_in_the_municipalitys_epj_and_one_audit_record(
    hub: Hub, journaling: ServiceProcess, epj: httpx.AsyncClient
) -> None:
    patient = FJORDVIK_PATIENTS[0]
    sent = [item(event_for(kind, patient, FJORDVIK.organization_number)) for kind in RENDERED]
    await enqueue(journaling, hub, sent)
    await wait_for(journaling, hub, [i.entry_id for i in sent], common_pb2.EVENT_STATE_JOURNALED)
    for queued, kind in zip(sent, RENDERED, strict=True):
        expected: dict[str, Any] = render_note(
            queued.event,
            NoteContext(queued.entry_id, DISPENSER.vendor_organization_number, "", DISPENSER.name),
        )["entry"][0]["resource"]
        (stored,) = await notes(epj, RESOURCE_OF[kind], queued.entry_id)
        assert stored["text"]["div"] == expected["text"]["div"]
        assert patient.national_id not in stored["text"]["div"]
        assert codings(stored) == codings(expected)
        assert any(
            "ehelse.no/fhir/CodeSystem/vkp-" in system or system == "http://loinc.org"
            for system, _ in codings(stored)
        )
        subject: dict[str, Any] = stored.get("subject") or stored["patient"]
        assert subject["identifier"]["system"] == patient.identifier_system
    # One audit record per delivered note, naming the patient.
    await asyncio.sleep(1.0)  # the audit relay runs every half second
    reader = hub.issuer.vendor_token(
        "auditor", [Scopes.AUDIT_READ], organization_number=FJORDVIK.organization_number
    )
    async with grpc.aio.insecure_channel(hub.audit.address) as channel:
        found = await audit_pb2_grpc.AuditServiceStub(channel).Query(
            audit_pb2.QueryRequest(
                municipality=FJORDVIK.organization_number,
                patient=common_pb2.NationalId(value=patient.national_id),
            ),
            metadata=(("authorization", f"Bearer {reader}"),),
        )
    created = [r for r in found.records if r.action == audit_pb2.AUDIT_ACTION_CREATE]
    assert sorted(r.resource for r in created) == sorted(
        f"journal note {i.entry_id}/1" for i in sent
    )


async def test_alarm_steps_are_held_and_do_not_block_the_patients_other_notes(
    hub: Hub, journaling: ServiceProcess, epj: httpx.AsyncClient
) -> None:
    patient = FJORDVIK_PATIENTS[1]
    alarm = item(event_for("alarm_step", patient, FJORDVIK.organization_number))
    later = item(event_for("home_measurement", patient, FJORDVIK.organization_number))
    await enqueue(journaling, hub, [alarm, later])
    await wait_for(journaling, hub, [later.entry_id], common_pb2.EVENT_STATE_JOURNALED)
    (held,) = await entries(journaling, hub, [alarm.entry_id])
    assert held.state == common_pb2.EVENT_STATE_QUEUED


# -- exactly once ------------------------------------------------------------------------------


async def test_an_answer_lost_after_the_epj_stored_the_note_gives_one_note_per_event(
    hub: Hub, journaling: ServiceProcess, epj: httpx.AsyncClient
) -> None:
    await set_faults(epj, "4699", drop_after_store=True)
    patient = FJORDVIK_PATIENTS[2]
    sent = [
        item(event_for("home_measurement", patient, FJORDVIK.organization_number)) for _ in range(3)
    ]
    for _ in range(3):  # enqueued several times
        await enqueue(journaling, hub, sent)
    # Let the EPJ store and drop several times, then answer again.
    for _ in range(100):
        counters = (await epj.get("/_control/counters")).json()
        if counters.get("4699 transaction", 0) >= 4:
            break
        await asyncio.sleep(0.1)
    await epj.delete("/_control/4699/faults")
    await wait_for(journaling, hub, [i.entry_id for i in sent], common_pb2.EVENT_STATE_JOURNALED)
    for queued in sent:
        assert len(await notes(epj, "Observation", queued.entry_id)) == 1


# -- dead letters ------------------------------------------------------------------------------


async def test_a_note_past_its_attempts_is_dead_once_the_next_flows_and_retry_brings_it_home(
    hub: Hub, journaling: ServiceProcess, epj: httpx.AsyncClient
) -> None:
    await set_faults(epj, "3499", error_status=500, error_count=5)
    patient = BJORKEDAL_PATIENTS[0]
    first = item(event_for("home_measurement", patient, BJORKEDAL.organization_number))
    second = item(event_for("home_measurement", patient, BJORKEDAL.organization_number))
    await enqueue(journaling, hub, [first])
    (dead,) = await wait_for(journaling, hub, [first.entry_id], common_pb2.EVENT_STATE_DEAD)
    assert (dead.attempts, dead.last_error_reason) == (5, "EPJ_ERROR_500")
    await enqueue(journaling, hub, [second])
    await wait_for(journaling, hub, [second.entry_id], common_pb2.EVENT_STATE_JOURNALED)
    alerts = [
        line
        for line in journaling.logs().splitlines()
        if "journal note dead" in line and first.entry_id in line
    ]
    assert len(alerts) == 1
    async with grpc.aio.insecure_channel(journaling.address) as channel:
        stub = journaling_pb2_grpc.JournalingServiceStub(channel)
        listed = await stub.ListDeadLetters(
            pb.ListDeadLettersRequest(municipality=BJORKEDAL.organization_number),
            metadata=hub.admin,
        )
        assert first.entry_id in [e.name.removeprefix("entries/") for e in listed.entries]
        await stub.RetryEntry(
            pb.RetryEntryRequest(name=f"entries/{first.entry_id}"), metadata=hub.admin
        )
    await wait_for(journaling, hub, [first.entry_id], common_pb2.EVENT_STATE_JOURNALED)
    assert len(await notes(epj, "Observation", first.entry_id)) == 1


# -- one municipality's outage -----------------------------------------------------------------


async def test_an_epj_in_full_outage_holds_up_no_other_municipality(
    hub: Hub, journaling: ServiceProcess, epj: httpx.AsyncClient
) -> None:
    await set_faults(epj, "3499", outage=True)
    down = [
        item(event_for("home_measurement", p, BJORKEDAL.organization_number))
        for p in BJORKEDAL_PATIENTS[1:4]
    ]
    up = [
        item(event_for("home_measurement", p, FJORDVIK.organization_number))
        for p in FJORDVIK_PATIENTS[3:13]
    ]
    await enqueue(journaling, hub, down + up)
    await wait_for(journaling, hub, [i.entry_id for i in up], common_pb2.EVENT_STATE_JOURNALED)
    waiting = await entries(journaling, hub, [i.entry_id for i in down])
    assert all(e.state == common_pb2.EVENT_STATE_RETRYING for e in waiting)
    await epj.delete("/_control/3499/faults")
    await wait_for(journaling, hub, [i.entry_id for i in down], common_pb2.EVENT_STATE_JOURNALED)


# -- order, with failures and two replicas -----------------------------------------------------


async def test_per_patient_order_holds_with_failures_and_two_replicas_on_postgresql(
    hub: Hub, postgres_url: str, epj: httpx.AsyncClient
) -> None:
    first, second = start_journaling(hub, postgres_url), start_journaling(hub, postgres_url)
    try:
        await set_faults(epj, "4699", error_rate=0.3, error_status=503)
        patients = FJORDVIK_PATIENTS[13:18]
        sent: dict[str, list[str]] = {p.national_id: [] for p in patients}
        batches = []
        for _ in range(6):
            batch = []
            for patient in patients:
                queued = item(event_for("home_measurement", patient, FJORDVIK.organization_number))
                sent[patient.national_id].append(queued.entry_id)
                batch.append(queued)
            batches.append(batch)
        for number, batch in enumerate(batches):
            await enqueue(first if number % 2 else second, hub, batch)
        ids = [i for per_patient in sent.values() for i in per_patient]
        done = await wait_for(first, hub, ids, common_pb2.EVENT_STATE_JOURNALED, seconds=120)
        sequence = {e.name.removeprefix("entries/"): e.sequence for e in done}
        await epj.delete("/_control/4699/faults")
        response = await epj.get(
            "/Observation", params={"identifier": f"{NOTE_IDENTIFIER_SYSTEM}|", "_count": "1000"}
        )
        stored = [
            identifier["value"].removesuffix("/1")
            for entry in response.json()["entry"]
            for identifier in entry["resource"].get("identifier", [])
            if identifier["system"] == NOTE_IDENTIFIER_SYSTEM
        ]
        for national_id, expected in sent.items():
            in_epj = [i for i in stored if i in set(expected)]
            assert in_epj == sorted(expected, key=lambda i: sequence[i]), national_id
            assert len(in_epj) == len(expected)  # each once
    finally:
        stop_all(first, second)


# -- a crash during delivery -------------------------------------------------------------------


async def test_a_sigkill_during_delivery_then_a_restart_journals_every_entry_once(
    hub: Hub, tmp_path: Path, epj: httpx.AsyncClient
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'journaling.db'}"
    process = start_journaling(hub, url)
    await set_faults(epj, "4699", latency_ms=150)
    patients = FJORDVIK_PATIENTS[0:5]
    sent = [
        item(event_for("home_measurement", p, FJORDVIK.organization_number))
        for _ in range(4)
        for p in patients
    ]
    try:
        await enqueue(process, hub, sent)
        for _ in range(100):
            found = await entries(process, hub, [i.entry_id for i in sent])
            if sum(e.state == common_pb2.EVENT_STATE_JOURNALED for e in found) >= 3:
                break
            await asyncio.sleep(0.05)
        process.kill()  # SIGKILL, mid-delivery
    finally:
        process.terminate()
    restarted = start_journaling(hub, url)
    try:
        await wait_for(restarted, hub, [i.entry_id for i in sent], common_pb2.EVENT_STATE_JOURNALED)
    finally:
        stop_all(restarted)
    for queued in sent:
        assert len(await notes(epj, "Observation", queued.entry_id)) == 1


# -- a backlog, and workers that wait for work -------------------------------------------------


async def waiting_in(process: ServiceProcess, hub: Hub, municipality: str) -> int:
    """How many of the municipality's entries still wait (at most one page of them)."""
    async with grpc.aio.insecure_channel(process.address) as channel:
        stub = journaling_pb2_grpc.JournalingServiceStub(channel)
        found = 0
        for state in (common_pb2.EVENT_STATE_QUEUED, common_pb2.EVENT_STATE_RETRYING):
            page = await stub.ListEntries(
                pb.ListEntriesRequest(municipality=municipality, state=state, page_size=1000),
                metadata=hub.admin,
            )
            found += len(page.entries)
        return found


async def test_a_backlog_in_one_municipality_holds_up_no_other_and_idle_workers_need_no_poll(
    hub: Hub, tmp_path: Path, epj: httpx.AsyncClient
) -> None:
    """Workers that poll only every minute: an Enqueue wakes them. While hundreds of one
    municipality's notes wait (its EPJ slow), another municipality's note is journaled at once;
    then the backlog drains."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'journaling.db'}"
    process = ServiceProcess(
        "journaling", {**hub.env, "VKP_DB_URL": url, "VKP_JOURNALING_POLL_SECONDS": "60"}
    )
    process.wait_serving()
    try:
        await set_faults(epj, "4699", latency_ms=20)
        rng = random.Random(15)
        backlog = [
            item(
                event_for(
                    "home_measurement",
                    SimpleNamespace(national_id=synthetic_national_id(rng)),
                    FJORDVIK.organization_number,
                )
            )
            for _ in range(400)
        ]
        for start in range(0, len(backlog), 200):
            await enqueue(process, hub, backlog[start : start + 200])
        patient = BJORKEDAL_PATIENTS[5]
        other = item(event_for("home_measurement", patient, BJORKEDAL.organization_number))
        await enqueue(process, hub, [other])
        await wait_for(process, hub, [other.entry_id], common_pb2.EVENT_STATE_JOURNALED)
        assert await waiting_in(process, hub, FJORDVIK.organization_number) > 0
        for _ in range(600):
            if not await waiting_in(process, hub, FJORDVIK.organization_number):
                break
            await asyncio.sleep(0.1)
        assert await waiting_in(process, hub, FJORDVIK.organization_number) == 0
    finally:
        stop_all(process)
