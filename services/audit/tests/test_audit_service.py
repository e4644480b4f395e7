"""The audit service's use cases, in-process without a server: the real store on a SQLite file in
the test's folder, a checkpoint key of its own, the appender running. What each use case answers,
the order of its checks, and the background tasks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics import MeterProvider

from vkp_audit.domain.chain import ChainProblem
from vkp_audit.domain.model import (
    Actor,
    AuditAction,
    AuditOutcome,
    AuditRecord,
    Patient,
    RecordQuery,
)
from vkp_audit.domain.reasons import Reason
from vkp_audit.service import AuditService
from vkp_audit.signing import CheckpointSigner
from vkp_audit.store import AuditStore
from vkp_lib.auth import Principal, PrincipalKind
from vkp_lib.db import Database
from vkp_lib.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable
from vkp_lib.testing.data import TEST_PEOPLE

FJORDVIK, NORDHEIM = "964120005", "980250008"
KARI, OLA = TEST_PEOPLE[0].national_id, TEST_PEOPLE[1].national_id


def reader(municipality: str) -> Principal:
    return Principal(PrincipalKind.VENDOR, "auditor", municipality, frozenset({"vkp:audit.read"}))


def access(n: int, *patients: str, municipality: str = FJORDVIK) -> AuditRecord:
    return AuditRecord(
        record_id=f"00000000-0000-4000-8000-{n:012d}",
        actor=Actor("dosetta-dispenser", "912340007"),
        municipality=municipality,
        patients=tuple(Patient(p) for p in patients),
        action=AuditAction.READ if len(patients) == 1 else AuditAction.QUERY,
        resource="/vkp.lookup.v1.LookupService/GetPatient",
        outcome=AuditOutcome.ALLOWED,
        occurred_time=datetime(2026, 11, 26, 8, n, tzinfo=UTC),
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[AuditService]:
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}", name="audit")
    await db.start()
    store = AuditStore(db)
    await store.migrate()
    key = tmp_path / "checkpoint.pem"
    CheckpointSigner.create_file(key)
    provider = MeterProvider()
    audit = AuditService(
        store,
        CheckpointSigner.from_file(key),
        checkpoint_seconds=0.01,
        verify_seconds=0.01,
        meter_provider=provider,
    )
    stopping = asyncio.Event()
    appender = asyncio.create_task(audit.appender.run(stopping))
    yield audit
    stopping.set()
    await appender
    await db.close()
    provider.shutdown()


# -- Record ----------------------------------------------------------------------------------


async def test_record_answers_one_result_per_record_in_the_order_sent(
    service: AuditService,
) -> None:
    placed = await service.record([access(1, KARI), access(2, OLA, municipality=NORDHEIM)])
    assert [(p.record_id, p.sequence, p.created) for p in placed] == [
        (access(1).record_id, 1, True),
        (access(2).record_id, 1, True),
    ]


async def test_a_record_sent_again_is_answered_with_its_first_place(
    service: AuditService,
) -> None:
    first = await service.record([access(1, KARI), access(2, KARI)])
    again = await service.record([access(2, KARI)])
    assert (again[0].sequence, again[0].created) == (first[1].sequence, False)


async def test_records_sent_while_one_commits_share_the_next_commit(
    service: AuditService, monkeypatch: pytest.MonkeyPatch
) -> None:
    appends: list[int] = []
    append = service.store.append

    async def counted(batch: list[AuditRecord], now: datetime) -> object:
        appends.append(len(batch))
        return await append(batch, now)

    monkeypatch.setattr(service.store, "append", counted)
    await asyncio.gather(*(service.record([access(n, KARI)]) for n in range(1, 21)))
    assert sum(appends) == 20
    assert len(appends) < 20


async def test_records_sent_after_the_appender_stopped_are_refused_audit_stopping(
    service: AuditService,
) -> None:
    stopped = AuditService(service.store, service.signer)
    stopping = asyncio.Event()
    stopping.set()
    await stopped.appender.run(stopping)
    with pytest.raises(Unavailable) as caught:
        await stopped.record([access(1, KARI)])
    assert caught.value.reason == Reason.AUDIT_STOPPING


# -- Query, ExportFhir, VerifyChain: the reader's own municipality ------------------------------


async def test_a_reader_of_another_municipality_is_refused_before_the_log_is_read(
    service: AuditService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unread(*args: object) -> object:
        raise AssertionError("the store was read")

    monkeypatch.setattr(service.store, "query", unread)
    monkeypatch.setattr(service.store, "chain", unread)
    stranger = reader(NORDHEIM)
    wanted = RecordQuery(FJORDVIK)
    for call in (
        service.query(stranger, wanted),
        service.export_fhir(stranger, wanted),
        service.verify_chain(stranger, FJORDVIK),
    ):
        with pytest.raises(PermissionDenied) as caught:
            await call
        assert caught.value.reason == Reason.WRONG_MUNICIPALITY


async def test_a_reader_without_an_organisation_reads_no_log(service: AuditService) -> None:
    with pytest.raises(PermissionDenied):
        await service.query(reader(""), RecordQuery(FJORDVIK))


async def test_query_finds_a_patients_records_newest_first_a_page_at_a_time(
    service: AuditService,
) -> None:
    await service.record([access(1, KARI), access(2, OLA), access(3, OLA, KARI), access(4, KARI)])
    first = await service.query(reader(FJORDVIK), RecordQuery(FJORDVIK, KARI, page_size=2))
    rest = await service.query(
        reader(FJORDVIK),
        RecordQuery(FJORDVIK, KARI, page_size=2, page_token=first.next_page_token),
    )
    assert [r.occurred_time.minute for r in first.records + rest.records] == [4, 3, 1]
    assert rest.next_page_token == ""


async def test_a_page_token_of_other_filters_is_refused(service: AuditService) -> None:
    await service.record([access(1, KARI), access(2, KARI)])
    first = await service.query(reader(FJORDVIK), RecordQuery(FJORDVIK, KARI, page_size=1))
    with pytest.raises(InvalidArgument) as caught:
        await service.query(
            reader(FJORDVIK), RecordQuery(FJORDVIK, OLA, page_token=first.next_page_token)
        )
    assert caught.value.reason == "INVALID_PAGE_TOKEN"


async def test_a_patients_export_names_that_patient_only(service: AuditService) -> None:
    await service.record([access(1, KARI), access(2, OLA, KARI)])
    export = await service.export_fhir(reader(FJORDVIK), RecordQuery(FJORDVIK, KARI))
    bundle = json.loads(export.bundle)
    assert len(bundle["entry"]) == 2
    assert KARI in export.bundle.decode()
    assert OLA not in export.bundle.decode()


async def test_an_export_of_the_whole_log_names_every_patient(service: AuditService) -> None:
    await service.record([access(1, OLA, KARI)])
    export = await service.export_fhir(reader(FJORDVIK), RecordQuery(FJORDVIK))
    assert KARI in export.bundle.decode()
    assert OLA in export.bundle.decode()


async def test_verify_chain_checks_from_the_sequence_asked(service: AuditService) -> None:
    await service.record([access(n, KARI) for n in range(1, 6)])
    result = await service.verify_chain(reader(FJORDVIK), FJORDVIK, from_sequence=3)
    assert (result.intact, result.records_checked) == (True, 3)
    part = await service.verify_chain(reader(FJORDVIK), FJORDVIK, 2, 3)
    assert (part.intact, part.records_checked) == (True, 2)


async def test_verify_chain_reports_a_checkpoint_not_signed_by_the_key(
    service: AuditService,
) -> None:
    await service.record([access(1, KARI), access(2, KARI)])
    await service.create_checkpoint(FJORDVIK)
    forge = sa.text("UPDATE audit_checkpoints SET signature = :s WHERE municipality = :m")
    await service.store.db.write(
        lambda session: session.execute(forge, {"s": bytes(64), "m": FJORDVIK})
    )
    result = await service.verify_chain(reader(FJORDVIK), FJORDVIK)
    assert (result.intact, result.problem, result.first_bad_sequence) == (
        False,
        ChainProblem.BAD_SIGNATURE,
        2,
    )


# -- CreateCheckpoint --------------------------------------------------------------------------


async def test_a_checkpoint_of_a_chain_without_records_is_chain_empty(
    service: AuditService,
) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        await service.create_checkpoint(FJORDVIK)
    assert caught.value.reason == Reason.CHAIN_EMPTY


async def test_a_checkpoint_signs_the_head_of_that_municipalitys_chain(
    service: AuditService,
) -> None:
    placed = await service.record(
        [access(1, KARI), access(2, KARI), access(3, OLA, municipality=NORDHEIM)]
    )
    checkpoint = await service.create_checkpoint(FJORDVIK)
    assert (checkpoint.municipality, checkpoint.sequence) == (FJORDVIK, placed[1].sequence)
    assert service.signer.valid(checkpoint)
    again = await service.create_checkpoint(FJORDVIK)
    assert again == checkpoint  # a head signed before is kept


# -- the background tasks ----------------------------------------------------------------------


async def test_the_checkpoint_task_signs_moved_heads_until_the_service_stops(
    service: AuditService,
) -> None:
    await service.record([access(1, KARI)])
    stopping = asyncio.Event()
    task = asyncio.create_task(service.checkpoints(stopping))
    for _ in range(500):
        if await service.store.latest_checkpoint(FJORDVIK) is not None:
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(task, 5)
    latest = await service.store.latest_checkpoint(FJORDVIK)
    assert latest is not None
    assert latest.sequence == 1


async def test_the_verification_task_keeps_running_after_a_failed_round(
    service: AuditService, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds: list[int] = []
    verify_all = service.verify_all

    async def flaky() -> dict[str, bool]:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise OSError("storage away")
        return await verify_all()

    monkeypatch.setattr(service, "verify_all", flaky)
    await service.record([access(1, KARI)])
    stopping = asyncio.Event()
    task = asyncio.create_task(service.verification(stopping))
    for _ in range(500):
        if service.intact:
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert len(rounds) >= 2
    assert service.intact == {FJORDVIK: True}
