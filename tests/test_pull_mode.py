"""Pull mode end to end, over real processes and real gRPC: the registry (seeded with the sandbox,
whose Nordheim kommune's EPJ pulls its notes), the audit service, the EPJ simulator (which must
receive nothing of Nordheim's) and journaling on SQLite and PostgreSQL; an EPJ fetching notes by
cursor (ListPending) while they are enqueued, and answering them (Acknowledge)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TypeAlias

import grpc
import httpx
import pytest

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp.common.v1 import common_pb2
from vkp.journaling.v1 import journaling_pb2 as pb
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_lib import paging
from vkp_lib.identity.permissions import Scopes
from vkp_lib.national_id import synthetic_national_id
from vkp_lib.sandbox import FJORDVIK, HOME_FOLLOW_UP, NORDHEIM
from vkp_lib.status import error_info
from vkp_lib.testing.events import sample_event
from vkp_lib.testing.hubs import Hub, hub_fixture, journaling_fixture, start_journaling
from vkp_lib.testing.processes import ServiceProcess, stop_all

#: The generated async stub's type (it exists in the type stubs only).
Stub: TypeAlias = "journaling_pb2_grpc.JournalingServiceAsyncStub"
PULLING = NORDHEIM.organization_number
#: The read timeout of the process that lets notes come back.
SHORT_READ_TIMEOUT = 1.5


hub = hub_fixture("pull-hub", {"VKP_JOURNALING_POLL_SECONDS": "0.05"})
journaling = journaling_fixture()


@pytest.fixture
async def replicas(
    hub: Hub, journaling: ServiceProcess, database_url: str
) -> AsyncIterator[tuple[Stub, Stub]]:
    """Two journaling replicas on PostgreSQL (their writes on connections of their own, so an
    Enqueue on one commits while the other numbers notes); on SQLite the one process twice."""
    second: ServiceProcess | None = None
    if database_url.startswith("postgresql"):
        second = start_journaling(hub, database_url)
    try:
        async with (
            grpc.aio.insecure_channel(journaling.address) as one,
            grpc.aio.insecure_channel((second or journaling).address) as other,
        ):
            yield (
                journaling_pb2_grpc.JournalingServiceStub(one),
                journaling_pb2_grpc.JournalingServiceStub(other),
            )
    finally:
        if second is not None:
            stop_all(second)


@pytest.fixture
def short_reads(hub: Hub, database_url: str) -> Iterator[ServiceProcess]:
    """Journaling whose fetched notes come back soon when they are not acknowledged."""
    env = {
        **hub.env,
        "VKP_DB_URL": database_url,
        "VKP_JOURNALING_PULL_READ_TIMEOUT_SECONDS": str(SHORT_READ_TIMEOUT),
    }
    process = ServiceProcess("journaling", env)
    try:
        process.wait_serving()
        yield process
    finally:
        stop_all(process)


@pytest.fixture
async def stub(journaling: ServiceProcess) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(journaling.address) as channel:
        yield journaling_pb2_grpc.JournalingServiceStub(channel)


def item(patient: str, municipality: str = PULLING) -> pb.EnqueueItem:
    event = sample_event("home_measurement", event_id=f"evt-{uuid.uuid4().hex[:12]}")
    event.municipality = municipality
    event.patient.value = patient
    queued = pb.EnqueueItem(
        entry_id=str(uuid.uuid4()),
        event=event,
        vendor_system=HOME_FOLLOW_UP.name,
        client_id=HOME_FOLLOW_UP.client_ids[0],
    )
    queued.receive_time.GetCurrentTime()
    return queued


def entry_id(note: pb.PendingNote) -> str:
    return note.entry.removeprefix("entries/")


def cursor(token: str) -> int:
    """The pull sequence a cursor stands at (white box: the token is ours)."""
    position = paging.position(token, PULLING, lambda parts: int(parts[0]))
    assert position is not None
    return position


def acknowledgement(
    note_id: str, outcome: pb.AcknowledgementOutcome.ValueType, reason: str = ""
) -> pb.Acknowledgement:
    return pb.Acknowledgement(entry=f"entries/{note_id}", outcome=outcome, reason=reason)


async def states(stub: Stub, hub: Hub, ids: list[str]) -> list[pb.Entry]:
    return [
        (await stub.GetEntry(pb.GetEntryRequest(name=f"entries/{i}"), metadata=hub.admin)).entry
        for i in ids
    ]


def reason_of(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[str, str]:
    info = error_info(caught.value)
    assert info is not None
    return caught.value.code().name, info.reason


async def transactions_to(hub: Hub, municipality_number: str) -> int:
    async with httpx.AsyncClient(base_url=hub.epj.url, timeout=10) as client:
        counters = (await client.get("/_control/counters")).json()
    return int(counters.get(f"{municipality_number} transaction", 0))


# -- exactly once, by cursor, while notes are enqueued ------------------------------------------


async def test_a_reader_paging_by_cursor_while_notes_are_enqueued_sees_each_once_in_order(
    hub: Hub, replicas: tuple[Stub, Stub]
) -> None:
    """Four writers enqueue (each its own patients, notes in order), a reader pages by cursor,
    acknowledging each page, until every note is seen: each once, each patient's in queue
    order, the cursor only ever going forward. On PostgreSQL through two replicas, writers and
    reader on both. Acknowledged notes are JOURNALED, and the push workers sent none of them to
    the EPJ."""
    rng = random.Random(16)
    writers = [[synthetic_national_id(rng) for _ in range(4)] for _ in range(4)]
    sent: dict[str, list[str]] = {p: [] for patients in writers for p in patients}
    done = asyncio.Event()

    async def write(patients: list[str], stub: Stub) -> None:
        for _ in range(8):
            batch = [item(p) for p in patients for _ in range(rng.randint(1, 2))]
            for queued in batch:
                sent[queued.event.patient.value].append(queued.entry_id)
            await stub.Enqueue(pb.EnqueueRequest(items=batch), metadata=hub.service)
            await asyncio.sleep(rng.uniform(0, 0.02))

    async def writing() -> None:
        await asyncio.gather(
            *(write(patients, replicas[n % 2]) for n, patients in enumerate(writers))
        )
        done.set()

    seen: list[pb.PendingNote] = []
    cursors: list[int] = []
    epj = hub.epj_of(PULLING)
    writer = asyncio.create_task(writing())
    token = ""
    read_while_writing = 0
    for turn in range(2000):
        total = sum(len(ids) for ids in sent.values())
        if done.is_set() and len(seen) >= total:
            break
        stub = replicas[turn % 2]
        page = await stub.ListPending(
            pb.ListPendingRequest(municipality=PULLING, page_size=7, page_token=token),
            metadata=epj,
        )
        if page.notes:
            read_while_writing += not done.is_set()
            cursors.append(cursor(page.next_page_token))
            seen.extend(page.notes)
            answers = [
                acknowledgement(entry_id(n), pb.ACKNOWLEDGEMENT_OUTCOME_JOURNALED)
                for n in page.notes
            ]
            acked = await stub.Acknowledge(
                pb.AcknowledgeRequest(municipality=PULLING, acknowledgements=answers),
                metadata=epj,
            )
            assert {r.state for r in acked.results} == {common_pb2.EVENT_STATE_JOURNALED}
        else:
            await asyncio.sleep(0.01)
        token = page.next_page_token
    await writer
    assert read_while_writing > 0  # the reader did read while the writers wrote
    ids = [entry_id(n) for n in seen]
    assert len(ids) == len(set(ids))  # none twice
    assert sorted(ids) == sorted(i for per_patient in sent.values() for i in per_patient)
    assert cursors == sorted(set(cursors))  # strictly forward
    for patient, expected in sent.items():
        theirs = [n for n in seen if n.patient.value == patient]
        assert [entry_id(n) for n in theirs] == expected, "per-patient order"
        sequences = [n.sequence for n in theirs]
        assert sequences == sorted(set(sequences))
    assert all(n.content_type.startswith("application/fhir+json") for n in seen)
    assert all(b'"resourceType":"Bundle"' in n.fhir_bundle for n in seen)
    found = await states(replicas[0], hub, ids)
    assert {e.state for e in found} == {common_pb2.EVENT_STATE_JOURNALED}
    assert await transactions_to(hub, NORDHEIM.municipality_number) == 0


# -- acknowledgements and the read timeout -----------------------------------------------------


async def test_answers_journal_or_kill_notes_and_an_unanswered_one_comes_back_after_the_cursor(
    hub: Hub, short_reads: ServiceProcess
) -> None:
    rng = random.Random()  # patients of this run's own: the audit log outlives it
    patients = [synthetic_national_id(rng) for _ in range(2)]
    items = [item(patients[0]), item(patients[1]), item(patients[0])]
    journaled, refused, unanswered = (i.entry_id for i in items)
    epj = hub.epj_of(PULLING)
    async with grpc.aio.insecure_channel(short_reads.address) as channel:
        stub = journaling_pb2_grpc.JournalingServiceStub(channel)
        await stub.Enqueue(pb.EnqueueRequest(items=items), metadata=hub.service)
        first = await stub.ListPending(pb.ListPendingRequest(municipality=PULLING), metadata=epj)
        assert sorted(entry_id(n) for n in first.notes) == sorted(i.entry_id for i in items)
        assert {e.state for e in await states(stub, hub, [unanswered])} == {
            common_pb2.EVENT_STATE_READ
        }
        answers = [
            acknowledgement(journaled, pb.ACKNOWLEDGEMENT_OUTCOME_JOURNALED),
            acknowledgement(refused, pb.ACKNOWLEDGEMENT_OUTCOME_REJECTED, "unknown patient"),
            acknowledgement(journaled, pb.ACKNOWLEDGEMENT_OUTCOME_JOURNALED),  # a repeat
            acknowledgement(str(uuid.uuid4()), pb.ACKNOWLEDGEMENT_OUTCOME_JOURNALED),
        ]
        acked = await stub.Acknowledge(
            pb.AcknowledgeRequest(municipality=PULLING, acknowledgements=answers), metadata=epj
        )
        assert [(r.state, r.error.reason) for r in acked.results] == [
            (common_pb2.EVENT_STATE_JOURNALED, ""),
            (common_pb2.EVENT_STATE_DEAD, ""),
            (common_pb2.EVENT_STATE_JOURNALED, ""),
            (common_pb2.EVENT_STATE_UNSPECIFIED, "ENTRY_NOT_FOUND"),
        ]
        done, dead = await states(stub, hub, [journaled, refused])
        assert done.state == common_pb2.EVENT_STATE_JOURNALED
        assert done.note_identifier == f"{journaled}/1"
        assert done.HasField("journaled_time")
        assert (dead.state, dead.last_error_reason) == (
            common_pb2.EVENT_STATE_DEAD,
            "EPJ_REFUSED: unknown patient",
        )
        request = pb.ListPendingRequest(municipality=PULLING, page_token=first.next_page_token)
        assert not (await stub.ListPending(request, metadata=epj)).notes  # not yet
        await asyncio.sleep(SHORT_READ_TIMEOUT + 0.2)
        again = await stub.ListPending(request, metadata=epj)
        assert [entry_id(n) for n in again.notes] == [unanswered]
        assert cursor(again.next_page_token) > cursor(first.next_page_token)
    # The journaled note is in the audit log once, as a pushed delivery is.
    reader = hub.issuer.vendor_token("auditor", [Scopes.AUDIT_READ], organization_number=PULLING)
    async with grpc.aio.insecure_channel(hub.audit.address) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        for _ in range(50):
            found = await audit.Query(
                audit_pb2.QueryRequest(
                    municipality=PULLING, patient=common_pb2.NationalId(value=patients[0])
                ),
                metadata=hub.bearer(reader),
            )
            if found.records:
                break
            await asyncio.sleep(0.2)
    created = [r.resource for r in found.records if r.action == audit_pb2.AUDIT_ACTION_CREATE]
    assert created == [f"journal note {journaled}/1"]  # once; none for the others


# -- who may pull ------------------------------------------------------------------------------


async def test_another_municipality_sees_none_of_the_notes_and_a_vendor_token_is_refused(
    hub: Hub, stub: Stub
) -> None:
    rng = random.Random(161616)
    ours = item(synthetic_national_id(rng))
    theirs = item(synthetic_national_id(rng), municipality=FJORDVIK.organization_number)
    await stub.Enqueue(pb.EnqueueRequest(items=[ours, theirs]), metadata=hub.service)
    other = hub.epj_of(FJORDVIK.organization_number)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListPending(pb.ListPendingRequest(municipality=PULLING), metadata=other)
    assert reason_of(caught) == ("PERMISSION_DENIED", "WRONG_MUNICIPALITY")
    answer = pb.AcknowledgeRequest(
        municipality=PULLING,
        acknowledgements=[acknowledgement(ours.entry_id, pb.ACKNOWLEDGEMENT_OUTCOME_JOURNALED)],
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Acknowledge(answer, metadata=other)
    assert reason_of(caught) == ("PERMISSION_DENIED", "WRONG_MUNICIPALITY")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListPending(
            pb.ListPendingRequest(municipality=FJORDVIK.organization_number), metadata=other
        )
    assert reason_of(caught) == ("FAILED_PRECONDITION", "NOT_PULL_MODE")
    vendor = hub.bearer(
        hub.issuer.vendor_token(
            HOME_FOLLOW_UP.client_ids[0], [Scopes.INGEST], organization_number=PULLING
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListPending(pb.ListPendingRequest(municipality=PULLING), metadata=vendor)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nordheim's own EPJ: its note only; another municipality's entry is not found.
    epj = hub.epj_of(PULLING)
    page = await stub.ListPending(pb.ListPendingRequest(municipality=PULLING), metadata=epj)
    assert [entry_id(n) for n in page.notes] == [ours.entry_id]
    foreign = pb.AcknowledgeRequest(
        municipality=PULLING,
        acknowledgements=[acknowledgement(theirs.entry_id, pb.ACKNOWLEDGEMENT_OUTCOME_JOURNALED)],
    )
    (result,) = (await stub.Acknowledge(foreign, metadata=epj)).results
    assert result.error.reason == "ENTRY_NOT_FOUND"
    (pushed,) = await states(stub, hub, [theirs.entry_id])
    assert pushed.state != common_pb2.EVENT_STATE_READ
