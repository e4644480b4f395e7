"""Alarm handling logs end to end, over real processes and real HTTP: the registry (seeded with the
sandbox, its EPJ endpoints on the simulator), the audit service, the EPJ simulator, and
journaling on SQLite and PostgreSQL with short alarm windows. An alarm's steps go straight into
journaling with Enqueue (as ingest's relay sends them: each step's entry id is its own, so a
repeat is the same entry); its handling log is read back from the simulator. And once through
the whole hub: a vendor's steps through ingest, whose CheckOpenAlarm follows the alarm."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fhir.resources.R4B.composition import Composition

from tests.test_ingest import submit_as_a_vendor_does
from tests.test_journaling import (
    FJORDVIK_PATIENTS,
    JOURNALING_ENV,
    enqueue,
    entries,
    event_for,
    item,
    wait_for,
)
from vkp.common.v1 import common_pb2, event_pb2
from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp.journaling.v1 import journaling_pb2 as pb
from vkp_journaling.domain.alarm import log_entry_id
from vkp_journaling.render import NOTE_IDENTIFIER_SYSTEM
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import DISPENSER, FJORDVIK, RESPONSE_CENTRE
from vkp_lib.testing.events import sample_alarm
from vkp_lib.testing.hubs import Hub, hub_fixture, journaling_fixture, start_journaling
from vkp_lib.testing.processes import ServiceProcess, stop_all

GOLDEN = (
    Path(__file__).parent.parent / "services/journaling/tests/golden/note_alarm_handling_log.json"
)
EVENT_CODES = "http://ehelse.no/fhir/CodeSystem/vkp-composition-event-v090"
#: Short windows, so the tests see them pass.
SETTLE_SECONDS = 2.0
TIMEOUT_SECONDS = 3.0


#: Journaling's settings: fast retries, and short alarm windows.
ALARM_ENV = {
    **JOURNALING_ENV,
    "VKP_JOURNALING_ALARM_SETTLE_SECONDS": str(SETTLE_SECONDS),
    "VKP_JOURNALING_ALARM_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
}
hub = hub_fixture("alarm-hub", ALARM_ENV)
journaling = journaling_fixture()


def alarm_items(patient: Any, alarm_id: str) -> list[pb.EnqueueItem]:
    """The sample alarm's steps for a patient of Fjordvik, in time order, as enqueued items."""
    steps = sample_alarm(
        alarm_id=alarm_id,
        national_id=patient.national_id,
        municipality=FJORDVIK.organization_number,
    )
    return [item(step) for step in steps]


def log_id(alarm_id: str, segment: int) -> str:
    return log_entry_id(DISPENSER.name, alarm_id, segment)


async def stored_resources(
    epj: httpx.AsyncClient, resource_type: str, key: str
) -> list[dict[str, Any]]:
    """The resources the EPJ holds with the note identifier `key`."""
    response = await epj.get(
        f"/{resource_type}", params={"identifier": f"{NOTE_IDENTIFIER_SYSTEM}|{key}"}
    )
    response.raise_for_status()
    return [e["resource"] for e in response.json().get("entry", [])]


async def handling_log(epj: httpx.AsyncClient, entry_id: str) -> dict[str, Any]:
    """The one Composition of a log entry in the EPJ."""
    (composition,) = await stored_resources(epj, "Composition", f"{entry_id}/1")
    return composition


def timeline(composition: dict[str, Any]) -> list[str]:
    """The Composition's event codes, checked to be in time order."""
    parsed = Composition.model_validate(composition)  # an R4 Composition
    assert parsed.event is not None
    events = composition["event"]
    starts = [e["period"]["start"] for e in events]
    assert starts == sorted(starts)
    assert all(e["code"][0]["coding"][0]["system"] == EVENT_CODES for e in events)
    return [e["code"][0]["coding"][0]["code"] for e in events]


async def log_journaled(
    process: ServiceProcess, hub: Hub, entry_id: str, seconds: float = 30
) -> pb.Entry:
    """The log entry once it is JOURNALED (it exists only once its segment is cut)."""
    for _ in range(int(seconds / 0.1)):
        if not await absent(process, hub, entry_id):
            (found,) = await entries(process, hub, [entry_id])
            if found.state == common_pb2.EVENT_STATE_JOURNALED:
                return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"the log {entry_id} is not journaled")


async def absent(process: ServiceProcess, hub: Hub, entry_id: str) -> bool:
    try:
        await entries(process, hub, [entry_id])
    except grpc.aio.AioRpcError as error:
        return error.code() == grpc.StatusCode.NOT_FOUND
    return False


@pytest.fixture
async def epj(hub: Hub) -> Any:
    async with httpx.AsyncClient(base_url=hub.epj.url, timeout=10) as client:
        yield client


async def test_an_alarms_steps_out_of_order_and_twice_become_one_handling_log_with_its_timeline(
    hub: Hub, journaling: ServiceProcess, epj: httpx.AsyncClient
) -> None:
    patient = FJORDVIK_PATIENTS[0]
    alarm_id = f"alarm-{random.randrange(10**9)}"
    steps = alarm_items(patient, alarm_id)
    mixed = steps[::-1]  # the closing step first
    random.Random(3).shuffle(mixed[1:])
    for one in mixed:
        await enqueue(journaling, hub, [one, one])  # each twice, the second a repeat
    await enqueue(journaling, hub, mixed)  # all of them again
    log = log_id(alarm_id, 1)
    done = await log_journaled(journaling, hub, log)
    assert done.note_identifier == f"{log}/1"
    composition = await handling_log(epj, log)
    assert timeline(composition) == [s.event.alarm_step.timeline_code for s in steps]
    golden = json.loads(GOLDEN.read_text())["entry"][0]["resource"]
    assert composition["text"]["div"] == golden["text"]["div"]
    assert patient.national_id not in composition["text"]["div"]
    assert composition["subject"]["identifier"]["value"] == patient.national_id
    (issue,) = await stored_resources(epj, "DetectedIssue", f"{log}/2")
    assert issue["code"]["coding"][0]["code"] == "3"
    (location,) = await stored_resources(epj, "Location", f"{log}/3")
    assert location["position"] == {"longitude": 10.75012, "latitude": 59.91234}
    # The steps are journaled as the log; no second segment was made of the repeats.
    for step in await entries(journaling, hub, [s.entry_id for s in steps]):
        assert (step.state, step.note_identifier) == (common_pb2.EVENT_STATE_JOURNALED, f"{log}/1")
    await asyncio.sleep(SETTLE_SECONDS + 0.5)
    assert await absent(journaling, hub, log_id(alarm_id, 2))


async def test_an_alarm_open_past_the_timeout_gives_a_segment_and_later_steps_a_second_across_a_restart(  # noqa: E501
    hub: Hub, database_url: str, epj: httpx.AsyncClient
) -> None:
    patient = FJORDVIK_PATIENTS[1]
    alarm_id = f"alarm-{random.randrange(10**9)}"
    steps = alarm_items(patient, alarm_id)
    process = start_journaling(hub, database_url)
    try:
        await enqueue(process, hub, steps[:2])  # registered, handling started: still open
        process.kill()  # SIGKILL before the timeout: the due time is in the database
    finally:
        process.terminate()
    restarted = start_journaling(hub, database_url)
    try:
        first = log_id(alarm_id, 1)
        await log_journaled(restarted, hub, first)
        opened = await handling_log(epj, first)
        assert timeline(opened) == ["0", "1"]
        assert "Alarmen var ikke avsluttet" in opened["text"]["div"]
        await enqueue(restarted, hub, steps[2:])  # the rest, the last closing it
        second = log_id(alarm_id, 2)
        await log_journaled(restarted, hub, second)
        closed = await handling_log(epj, second)
        assert timeline(closed) == ["4", "5", "7"]
        assert closed["title"].endswith("(del 2)")
        assert "Alarmen er avsluttet." in closed["text"]["div"]
        assert len(await stored_resources(epj, "Composition", f"{first}/1")) == 1
    finally:
        stop_all(restarted)


async def test_a_dispenser_note_for_the_patient_is_journaled_while_the_alarm_is_open(
    hub: Hub, database_url: str, epj: httpx.AsyncClient
) -> None:
    patient = FJORDVIK_PATIENTS[2]
    alarm_id = f"alarm-{random.randrange(10**9)}"
    steps = alarm_items(patient, alarm_id)
    process = start_journaling(hub, database_url, VKP_JOURNALING_ALARM_TIMEOUT_SECONDS="600")
    try:
        await enqueue(process, hub, steps[:3])  # open, for ten minutes
        dispense = item(event_for("medication_dispense", patient, FJORDVIK.organization_number))
        await enqueue(process, hub, [dispense])
        await wait_for(process, hub, [dispense.entry_id], common_pb2.EVENT_STATE_JOURNALED)
        assert await absent(process, hub, log_id(alarm_id, 1))  # the alarm is still open
        held = await entries(process, hub, [s.entry_id for s in steps[:3]])
        assert all(s.state == common_pb2.EVENT_STATE_QUEUED for s in held)
        # Closing it journals its log after the dispenser's note.
        await enqueue(process, hub, steps[3:])
        log = await log_journaled(process, hub, log_id(alarm_id, 1))
        (note,) = await entries(process, hub, [dispense.entry_id])
        assert log.sequence > note.sequence
        assert timeline(await handling_log(epj, log_id(alarm_id, 1))) == [
            s.event.alarm_step.timeline_code for s in steps
        ]
    finally:
        stop_all(process)


# -- an alarm through the whole hub ----------------------------------------------------------


async def check_open_alarm(
    hub: Hub, ingest: ServiceProcess, alarm_id: str, patient: Any
) -> ingest_pb2.CheckOpenAlarmResponse:
    """CheckOpenAlarm as lookup asks it: with a hub service token."""
    token = hub.issuer.service_token("lookup")
    async with grpc.aio.insecure_channel(ingest.address) as channel:
        return await ingest_pb2_grpc.IngestServiceStub(channel).CheckOpenAlarm(
            ingest_pb2.CheckOpenAlarmRequest(
                vendor_system=RESPONSE_CENTRE.name,
                alarm_id=alarm_id,
                patient=common_pb2.NationalId(value=patient.national_id),
                municipality=FJORDVIK.organization_number,
            ),
            metadata=(("authorization", f"Bearer {token}"),),
        )


async def test_an_alarm_sent_through_ingest_out_of_order_and_twice_is_open_then_closed_and_one_log(
    hub: Hub, tmp_path: Path, auth_env: dict[str, str], epj: httpx.AsyncClient
) -> None:
    """The whole hub (ingest, registry, audit, journaling, the EPJ simulator; SQLite): the
    response centre's steps through SubmitEvent, each twice and out of order, the closing step
    before a late one; ingest says the alarm is open, then closed; one handling log with the
    whole timeline reaches the EPJ, and the vendor sees every step JOURNALED."""
    journaling = start_journaling(
        hub,
        f"sqlite+aiosqlite:///{tmp_path / 'journaling.db'}",
        # Room for the late step to come through ingest's relay within the window.
        VKP_JOURNALING_ALARM_SETTLE_SECONDS="4",
    )
    ingest = ServiceProcess(
        "ingest",
        {
            **auth_env,
            "VKP_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}",
            "VKP_REGISTRY_TARGET": hub.registry.address,
            "VKP_AUDIT_TARGET": hub.audit.address,
            "VKP_JOURNALING_TARGET": journaling.address,
        },
    )
    try:
        ingest.wait_serving()
        patient = FJORDVIK_PATIENTS[3]
        alarm_id = f"alarm-{random.randrange(10**9)}"
        steps = sample_alarm(
            alarm_id=alarm_id,
            national_id=patient.national_id,
            municipality=FJORDVIK.organization_number,
            at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20),
        )
        *before_close, closing = steps
        random.Random(5).shuffle(before_close)
        late = before_close.pop()  # happened before the close, arrives after it
        token = hub.issuer.vendor_token(
            RESPONSE_CENTRE.client_ids[0],
            [Scopes.INGEST],
            organization_number=RESPONSE_CENTRE.vendor_organization_number,
        )
        vendor = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(ingest.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)

            async def send(step: event_pb2.Event) -> None:
                for _ in range(2):  # each twice: the second is a replay
                    request = ingest_pb2.SubmitEventRequest(event=step)
                    receipt = await submit_as_a_vendor_does(stub, request, vendor)
                    assert receipt.receipt.state == common_pb2.EVENT_STATE_REGISTERED

            assert not (await check_open_alarm(hub, ingest, alarm_id, patient)).open
            for step in before_close:
                await send(step)
            assert (await check_open_alarm(hub, ingest, alarm_id, patient)).open
            await send(closing)
            await send(late)
            answer = await check_open_alarm(hub, ingest, alarm_id, patient)
            assert not answer.open
            assert answer.closed_time.ToDatetime(tzinfo=UTC) == closing.occurred_time.ToDatetime(
                tzinfo=UTC
            )
            log = log_entry_id(RESPONSE_CENTRE.name, alarm_id, 1)
            done = await log_journaled(journaling, hub, log)
            assert done.note_identifier == f"{log}/1"
            composition = await handling_log(epj, log)
            assert timeline(composition) == [s.alarm_step.timeline_code for s in steps]
            assert "Alarmen er avsluttet." in composition["text"]["div"]
            assert patient.national_id not in composition["text"]["div"]
            # Every step, as the vendor asks about it, is journaled as the log.
            for step in steps:
                status = await stub.GetEventStatus(
                    ingest_pb2.GetEventStatusRequest(event_id=step.event_id), metadata=vendor
                )
                assert status.status.state == common_pb2.EVENT_STATE_JOURNALED, step.event_id
        assert await absent(journaling, hub, log_entry_id(RESPONSE_CENTRE.name, alarm_id, 2))
    finally:
        stop_all(ingest, journaling)


def test_the_sample_alarm_is_a_valid_alarm_for_the_sandbox() -> None:
    """The steps the tests send are what ingest would accept: each an alarm step of one alarm,
    the last closing it."""
    steps = sample_alarm(alarm_id="alarm-x", municipality=FJORDVIK.organization_number)
    assert {s.alarm_step.alarm_id for s in steps} == {"alarm-x"}
    assert [s.alarm_step.closes_alarm for s in steps] == [False] * 4 + [True]
    assert all(isinstance(s, event_pb2.Event) for s in steps)
