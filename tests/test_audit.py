"""The audit service as a real process, on SQLite and on PostgreSQL: records in hash chains,
the patient's access log, tampering found by VerifyChain, and two replicas writing at once."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle
from google.protobuf.timestamp_pb2 import Timestamp
from joserfc.jwk import ECKey, KeySet
from sqlalchemy.ext.asyncio import create_async_engine

from vkp.audit.v1 import audit_pb2 as pb
from vkp.audit.v1 import audit_pb2_grpc
from vkp.common.v1 import common_pb2
from vkp_audit.domain.chain import canonical, from_canonical, hash_of, link
from vkp_audit.signing import CheckpointSigner
from vkp_lib.audit_client import AuditClient
from vkp_lib.clients import insecure_channel
from vkp_lib.db import async_url
from vkp_lib.identity.issuer import DevelopmentIssuer, ServiceTokenSource, load_private_key
from vkp_lib.national_id import synthetic_organization_number
from vkp_lib.status import error_info
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.hubs import Tokens
from vkp_lib.testing.processes import ServiceProcess

_rng = random.Random()
AUDIT = "vkp.audit.v1.AuditService"


def org() -> str:
    return synthetic_organization_number(_rng)


def _when(minutes: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 11, 26, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes))
    return stamp


def access(
    municipality: str,
    patients: list[str],
    *,
    client_id: str = "dosetta-dispenser",
    minute: int = 0,
    outcome: pb.AuditOutcome.ValueType = pb.AUDIT_OUTCOME_ALLOWED,
) -> pb.AuditRecord:
    return pb.AuditRecord(
        actor=pb.Actor(client_id=client_id, organization_number="912340007"),
        municipality=municipality,
        patients=[common_pb2.NationalId(value=p) for p in patients],
        action=pb.AUDIT_ACTION_READ if len(patients) == 1 else pb.AUDIT_ACTION_QUERY,
        resource="/vkp.lookup.v1.LookupService/GetPatient",
        purpose=pb.Purpose(service_code=common_pb2.SERVICE_CODE_MD),
        outcome=outcome,
        occurred_time=_when(minute),
    )


@dataclass
class Audit(Tokens):
    process: ServiceProcess
    url: str
    issuer: DevelopmentIssuer
    channel: grpc.aio.Channel
    client: AuditClient
    stub: audit_pb2_grpc.AuditServiceAsyncStub

    async def chain_of(self, municipality: str, n: int) -> None:
        """`n` records in the municipality's chain, one at a time (sequences 1..n)."""
        for i in range(n):
            await self.client.record(
                access(municipality, [TEST_PEOPLE[i % 3].national_id], minute=i)
            )

    async def verify(self, municipality: str) -> pb.VerifyChainResponse:
        return await self.stub.VerifyChain(
            pb.VerifyChainRequest(municipality=municipality), metadata=self.reader(municipality)
        )

    async def checkpoint(self, municipality: str) -> pb.Checkpoint:
        response = await self.stub.CreateCheckpoint(
            pb.CreateCheckpointRequest(municipality=municipality), metadata=self.admin
        )
        return response.checkpoint


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def audit_process(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_env: dict[str, str],
    postgres_url: str,
) -> Iterator[tuple[ServiceProcess, str]]:
    url = (
        f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}"
        if request.param == "sqlite"
        else postgres_url
    )
    process = ServiceProcess("audit", {**auth_env, "VKP_DB_URL": url})
    try:
        process.wait_serving()
        yield process, url
    finally:
        process.send_sigterm()
        assert process.terminate() == 0, process.logs()[-3000:]


def _connect(process: ServiceProcess, url: str, issuer: DevelopmentIssuer) -> Audit:
    tokens = ServiceTokenSource(load_private_key(issuer.service_key_file), "lookup")
    channel = insecure_channel(process.address, AUDIT, tokens)
    return Audit(
        process,
        url,
        issuer,
        channel,
        AuditClient(channel),
        audit_pb2_grpc.AuditServiceStub(channel),
    )


@pytest.fixture
async def audit(
    audit_process: tuple[ServiceProcess, str], dev_issuer: DevelopmentIssuer
) -> AsyncIterator[Audit]:
    connected = _connect(*audit_process, dev_issuer)
    yield connected
    await connected.channel.close()


def reason_of(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[str, str]:
    info = error_info(caught.value)
    assert info is not None
    return caught.value.code().name, info.reason


# -- the patient's access log ------------------------------------------------------------------


async def test_a_patients_access_log_holds_exactly_the_records_that_name_them(
    audit: Audit,
) -> None:
    place, other_place = org(), org()
    kari, ola, ingrid = (p.national_id for p in TEST_PEOPLE[:3])
    about_kari = [
        access(place, [kari], minute=1),
        access(place, [ola, kari, ingrid], minute=2),  # a list that names her among others
        access(place, [kari], client_id="trygg-respons", minute=3, outcome=pb.AUDIT_OUTCOME_DENIED),
    ]
    others = [
        access(place, [ola], minute=4),
        access(place, [ingrid, ola], minute=5),
        access(other_place, [kari], minute=6),  # another municipality's log
    ]
    results = await audit.client.record_many(about_kari + others)
    assert all(r.created for r in results)
    found: list[pb.AuditRecord] = []
    token = ""
    while True:
        page = await audit.stub.Query(
            pb.QueryRequest(
                municipality=place,
                patient=common_pb2.NationalId(value=kari),
                page_size=2,
                page_token=token,
            ),
            metadata=audit.reader(place),
        )
        found += page.records
        token = page.next_page_token
        if not token:
            break
    ids = {r.record_id for r in found}
    assert ids == {r.record_id for r in await _stored(audit, place, about_kari)}
    assert [r.occurred_time.seconds for r in found] == sorted(
        (r.occurred_time.seconds for r in found), reverse=True
    )
    denied = next(r for r in found if r.outcome == pb.AUDIT_OUTCOME_DENIED)
    assert denied.actor.client_id == "trygg-respons"
    by_actor = await audit.stub.Query(
        pb.QueryRequest(municipality=place, actor_client_id="trygg-respons"),
        metadata=audit.reader(place),
    )
    assert [r.record_id for r in by_actor.records] == [denied.record_id]


async def _stored(audit: Audit, place: str, sent: list[pb.AuditRecord]) -> list[pb.AuditRecord]:
    """The stored records with the contents of `sent` (their ids are the client's)."""
    page = await audit.stub.Query(
        pb.QueryRequest(municipality=place, page_size=1000), metadata=audit.reader(place)
    )
    times = {r.occurred_time.seconds for r in sent}
    patients = {tuple(p.value for p in r.patients) for r in sent}
    return [
        r
        for r in page.records
        if r.occurred_time.seconds in times and tuple(p.value for p in r.patients) in patients
    ]


async def test_a_reader_from_another_municipality_is_refused(audit: Audit) -> None:
    place = org()
    await audit.client.record(access(place, [TEST_PEOPLE[0].national_id]))
    for call in (
        audit.stub.Query(pb.QueryRequest(municipality=place), metadata=audit.reader(org())),
        audit.stub.VerifyChain(
            pb.VerifyChainRequest(municipality=place), metadata=audit.reader(org())
        ),
        audit.stub.ExportFhir(
            pb.ExportFhirRequest(municipality=place), metadata=audit.reader(org())
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert reason_of(caught) == ("PERMISSION_DENIED", "WRONG_MUNICIPALITY")


async def test_a_retried_record_is_stored_once(audit: Audit) -> None:
    place = org()
    record = access(place, [TEST_PEOPLE[1].national_id])
    record.record_id = "6f1c2a4e-8d0b-4c7e-9a51-2b3c4d5e6f70".replace(
        "6f70", f"{_rng.randrange(10**4):04d}"
    )
    first = await audit.client.record(record)
    again = await audit.client.record(record)
    assert (first.created, again.created) == (True, False)
    assert again.sequence == first.sequence
    head = await audit.verify(place)
    assert (head.intact, head.records_checked) == (True, 1)


async def test_records_from_concurrent_callers_travel_together(audit: Audit) -> None:
    place = org()
    before = audit.client.calls
    await asyncio.gather(
        *(audit.client.record(access(place, [TEST_PEOPLE[i % 3].national_id])) for i in range(50))
    )
    assert audit.client.calls - before < 50
    result = await audit.verify(place)
    assert (result.intact, result.records_checked) == (True, 50)


async def test_the_access_log_exports_as_a_fhir_bundle_of_audit_events(audit: Audit) -> None:
    place = org()
    kari, ola = TEST_PEOPLE[0].national_id, TEST_PEOPLE[1].national_id
    await audit.client.record_many(
        [
            access(place, [kari], minute=1),
            access(place, [kari], minute=2),
            access(place, [ola, kari], minute=3),  # a list that also named someone else
        ]
    )
    export = await audit.stub.ExportFhir(
        pb.ExportFhirRequest(municipality=place, patient=common_pb2.NationalId(value=kari)),
        metadata=audit.reader(place),
    )
    bundle = Bundle.model_validate_json(export.fhir_bundle)
    assert bundle.type == "collection"
    assert len(bundle.entry or []) == 3
    assert {type(e.resource).__name__ for e in bundle.entry or []} == {"AuditEvent"}
    assert export.content_type.startswith("application/fhir+json")
    # The patient's own log names the patient only.
    assert ola not in export.fhir_bundle.decode()
    assert kari in export.fhir_bundle.decode()


# -- the reasons of the contract -----------------------------------------------------------------


async def test_a_checkpoint_of_a_municipality_without_records_is_chain_empty(
    audit: Audit,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.checkpoint(org())
    assert reason_of(caught) == ("FAILED_PRECONDITION", "CHAIN_EMPTY")


async def test_record_with_a_vendor_token_is_refused(audit: Audit) -> None:
    place = org()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.stub.Record(
            pb.RecordRequest(records=[access(place, [TEST_PEOPLE[0].national_id])]),
            metadata=audit.reader(place),
        )
    assert reason_of(caught) == ("PERMISSION_DENIED", "SERVICE_IDENTITY_REQUIRED")


async def test_a_page_token_of_another_patients_log_is_refused(audit: Audit) -> None:
    place = org()
    kari, ola = TEST_PEOPLE[0].national_id, TEST_PEOPLE[1].national_id
    await audit.client.record_many([access(place, [kari], minute=1), access(place, [kari])])
    first = await audit.stub.Query(
        pb.QueryRequest(municipality=place, patient=common_pb2.NationalId(value=kari), page_size=1),
        metadata=audit.reader(place),
    )
    assert first.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.stub.Query(
            pb.QueryRequest(
                municipality=place,
                patient=common_pb2.NationalId(value=ola),
                page_token=first.next_page_token,
            ),
            metadata=audit.reader(place),
        )
    assert reason_of(caught) == ("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN")


async def test_a_patient_id_that_is_not_eleven_digits_is_refused(audit: Audit) -> None:
    place = org()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.stub.Query(
            pb.QueryRequest(municipality=place, patient=common_pb2.NationalId(value="1234")),
            metadata=audit.reader(place),
        )
    assert reason_of(caught) == ("INVALID_ARGUMENT", "INVALID_NATIONAL_ID")


# -- tampering ---------------------------------------------------------------------------------


async def _sql(url: str, *statements: tuple[str, dict[str, Any]]) -> list[Any]:
    """Runs statements straight against the audit database, as an intruder would."""
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            results = []
            for statement, params in statements:
                result = await connection.execute(sa.text(statement), params)
                results.append(result.fetchall() if result.returns_rows else None)
            return results
    finally:
        await engine.dispose()


async def _body(url: str, place: str, sequence: int) -> tuple[str, str]:
    (rows,) = await _sql(
        url,
        (
            "SELECT body, hash FROM audit_records WHERE municipality = :m AND sequence = :s",
            {"m": place, "s": sequence},
        ),
    )
    return rows[0][0], rows[0][1]


Tamper = Callable[[str, str], Awaitable[None]]


async def alter(url: str, place: str) -> None:
    body, _ = await _body(url, place, 3)
    edited = body.replace('"outcome":"allowed"', '"outcome":"denied"')
    assert edited != body
    await _sql(
        url,
        (
            "UPDATE audit_records SET body = :b WHERE municipality = :m AND sequence = 3",
            {"b": edited, "m": place},
        ),
    )


async def delete(url: str, place: str) -> None:
    await _sql(
        url,
        ("DELETE FROM audit_records WHERE municipality = :m AND sequence = 3", {"m": place}),
    )


async def reorder(url: str, place: str) -> None:
    await _sql(
        url,
        (
            "UPDATE audit_records SET sequence = -4 WHERE municipality = :m AND sequence = 4",
            {"m": place},
        ),
        (
            "UPDATE audit_records SET sequence = 4 WHERE municipality = :m AND sequence = 3",
            {"m": place},
        ),
        (
            "UPDATE audit_records SET sequence = 3 WHERE municipality = :m AND sequence = -4",
            {"m": place},
        ),
    )


async def insert(url: str, place: str) -> None:
    """A forged record slipped in at 3, linked, hashed and indexed as the chain would: the rest
    moves up."""
    body, _ = await _body(url, place, 2)
    before = from_canonical(body, hash_of(body))
    forged = link(
        before.__class__(
            **{**before.__dict__, "record_id": "00000000-0000-4000-8000-000000000001"}
        ),
        3,
        before.hash,
        datetime.now(UTC),
    )
    statements: list[tuple[str, dict[str, Any]]] = [
        (
            "UPDATE audit_records SET sequence = sequence + 1000"
            " WHERE municipality = :m AND sequence >= 3",
            {"m": place},
        ),
        (
            "UPDATE audit_records SET sequence = sequence - 999"
            " WHERE municipality = :m AND sequence >= 1003",
            {"m": place},
        ),
        (
            "UPDATE audit_record_patients SET sequence = sequence + 1000"
            " WHERE municipality = :m AND sequence >= 3",
            {"m": place},
        ),
        (
            "UPDATE audit_record_patients SET sequence = sequence - 999"
            " WHERE municipality = :m AND sequence >= 1003",
            {"m": place},
        ),
        (
            "INSERT INTO audit_record_patients (municipality, sequence, national_id)"
            " VALUES (:m, 3, :p)",
            {"m": place, "p": forged.patients[0].national_id},
        ),
        (
            "INSERT INTO audit_records"
            " (municipality, sequence, record_id, occurred_time, client_id, hash, body)"
            " VALUES (:m, 3, :r, :t, :c, :h, :b)",
            {
                "m": place,
                "r": forged.record_id,
                "t": forged.occurred_time,
                "c": forged.actor.client_id,
                "h": forged.hash,
                "b": canonical(forged),
            },
        ),
    ]
    await _sql(url, *statements)


async def unindex(url: str, place: str) -> None:
    """Hides record 3 from its patient's access log, leaving the record itself as it was."""
    await _sql(
        url,
        (
            "DELETE FROM audit_record_patients WHERE municipality = :m AND sequence = 3",
            {"m": place},
        ),
    )


TAMPERING: dict[str, tuple[Tamper, int, str]] = {
    "a record altered": (alter, 3, "CHAIN_PROBLEM_HASH_MISMATCH"),
    "a record deleted": (delete, 3, "CHAIN_PROBLEM_GAP"),
    "two records swapped": (reorder, 3, "CHAIN_PROBLEM_BROKEN_LINK"),
    "a record inserted": (insert, 4, "CHAIN_PROBLEM_BROKEN_LINK"),
    "a record hidden from a patient's log": (unindex, 3, "CHAIN_PROBLEM_INDEX_MISMATCH"),
}


@pytest.mark.parametrize(("tamper", "at", "problem"), TAMPERING.values(), ids=TAMPERING.keys())
async def test_verify_chain_finds_tampering_at_the_record_it_touched(
    audit: Audit, tamper: Tamper, at: int, problem: str
) -> None:
    place = org()
    await audit.chain_of(place, 6)
    assert (await audit.verify(place)).intact
    await tamper(audit.url, place)
    result = await audit.verify(place)
    assert not result.intact
    assert (result.first_bad_sequence, pb.ChainProblem.Name(result.problem)) == (at, problem)


async def _rewrite_from(url: str, place: str, sequence: int) -> None:
    """Rewrites the chain from `sequence` on, consistently: every hash and link recomputed."""
    (rows,) = await _sql(
        url,
        (
            "SELECT sequence, body, hash FROM audit_records"
            " WHERE municipality = :m ORDER BY sequence",
            {"m": place},
        ),
    )
    previous = ""
    statements: list[tuple[str, dict[str, Any]]] = []
    for row_sequence, body, stored_hash in rows:
        record = from_canonical(body, stored_hash)
        if row_sequence >= sequence:
            if row_sequence == sequence:
                record = record.__class__(**{**record.__dict__, "outcome_reason": "EDITED"})
            record = link(record, row_sequence, previous, record.record_time or datetime.now(UTC))
            statements.append(
                (
                    "UPDATE audit_records SET body = :b, hash = :h"
                    " WHERE municipality = :m AND sequence = :s",
                    {"b": canonical(record), "h": record.hash, "m": place, "s": row_sequence},
                )
            )
        previous = record.hash
    statements.append(
        (
            "UPDATE audit_chains SET head_hash = :h WHERE municipality = :m",
            {"h": previous, "m": place},
        )
    )
    await _sql(url, *statements)


async def test_a_chain_rewritten_consistently_fails_at_the_signed_checkpoint(audit: Audit) -> None:
    place = org()
    await audit.chain_of(place, 6)
    signed = await audit.checkpoint(place)
    assert signed.sequence == 6
    await _rewrite_from(audit.url, place, 2)
    result = await audit.verify(place)
    assert not result.intact
    assert (result.first_bad_sequence, result.problem) == (6, pb.CHAIN_PROBLEM_CHECKPOINT_MISMATCH)
    # Re-signing the forged head needs the key: writing the checkpoint row is not enough.
    (rows,) = await _sql(
        audit.url,
        ("SELECT head_hash FROM audit_chains WHERE municipality = :m", {"m": place}),
    )
    await _sql(
        audit.url,
        (
            "UPDATE audit_checkpoints SET head_hash = :h WHERE municipality = :m",
            {"h": rows[0][0], "m": place},
        ),
    )
    result = await audit.verify(place)
    assert (result.first_bad_sequence, result.problem) == (6, pb.CHAIN_PROBLEM_BAD_SIGNATURE)


async def test_a_chain_cut_short_after_its_checkpoint_is_found(audit: Audit) -> None:
    place = org()
    await audit.chain_of(place, 5)
    await audit.checkpoint(place)
    await _sql(
        audit.url,
        ("DELETE FROM audit_records WHERE municipality = :m AND sequence >= 4", {"m": place}),
    )
    result = await audit.verify(place)
    assert (result.first_bad_sequence, result.problem) == (5, pb.CHAIN_PROBLEM_CHECKPOINT_MISMATCH)


# -- two replicas on one PostgreSQL ------------------------------------------------------------


@pytest.fixture
def two_audits(
    auth_env: dict[str, str], postgres_url: str
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    first = ServiceProcess("audit", {**auth_env, "VKP_DB_URL": postgres_url})
    second = ServiceProcess("audit", {**auth_env, "VKP_DB_URL": postgres_url})
    try:
        first.wait_serving()
        second.wait_serving()
        yield first, second
    finally:
        for process in (first, second):
            process.send_sigterm()
        for process in (first, second):
            process.terminate()


async def test_two_replicas_writing_at_once_keep_every_chain_linear(
    two_audits: tuple[ServiceProcess, ServiceProcess],
    postgres_url: str,
    dev_issuer: DevelopmentIssuer,
) -> None:
    replicas = [_connect(p, postgres_url, dev_issuer) for p in two_audits]
    places = [org() for _ in range(3)]
    records = [
        access(places[i % 3], [TEST_PEOPLE[i % 8].national_id], minute=i % 600) for i in range(1000)
    ]

    async def send(replica: Audit, share: list[pb.AuditRecord]) -> None:
        for start in range(0, len(share), 25):
            await asyncio.gather(*(replica.client.record(r) for r in share[start : start + 25]))

    await asyncio.gather(send(replicas[0], records[0::2]), send(replicas[1], records[1::2]))
    for place in places:
        result = await replicas[0].verify(place)
        assert result.intact, (place, result)
        assert result.records_checked == len([r for r in records if r.municipality == place])
    (rows,) = await _sql(
        postgres_url,
        (
            "SELECT municipality, body FROM audit_records WHERE municipality IN (:a, :b, :c)",
            {"a": places[0], "b": places[1], "c": places[2]},
        ),
    )
    previous = [(m, json.loads(body)["previous_hash"]) for m, body in rows]
    assert len(previous) == 1000
    assert len(set(previous)) == 1000  # no two records share a previous hash
    for replica in replicas:
        await replica.channel.close()


def test_the_audit_commands_query_verify_export_and_checkpoint(
    audit_process: tuple[ServiceProcess, str], dev_issuer: DevelopmentIssuer, tmp_path: Path
) -> None:
    process, _ = audit_process
    place = org()

    async def seed() -> None:
        connected = _connect(process, audit_process[1], dev_issuer)
        await connected.chain_of(place, 4)
        await connected.channel.close()

    asyncio.run(seed())

    def vkp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "vkp_cli",
                "audit",
                *args,
                "--municipality",
                place,
                "--target",
                process.address,
                "--issuer-dir",
                str(dev_issuer.directory),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "250"},
        )

    assert vkp("verify").returncode == 0
    checkpoint = vkp("checkpoint")
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert "4" in checkpoint.stdout
    listed = vkp("query")
    assert listed.returncode == 0
    assert listed.stdout.count("dosetta-dispenser") == 4
    exported = vkp("export", "--output", str(tmp_path / "log.json"))
    assert exported.returncode == 0, exported.stderr
    bundle = Bundle.model_validate_json((tmp_path / "log.json").read_text())
    assert len(bundle.entry or []) == 4


def test_outside_development_the_audit_service_needs_its_checkpoint_key(
    tmp_path: Path, dev_issuer: DevelopmentIssuer
) -> None:
    jwks = tmp_path / "jwks.json"
    key = ECKey.generate_key("P-256", parameters={"kid": "helseid-2026"})
    jwks.write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    env = {
        "VKP_DEVELOPMENT": "false",
        "VKP_AUTH_ISSUER": "https://helseid-sts.example",
        "VKP_AUTH_JWKS_FILE": str(jwks),
        "VKP_AUTH_SERVICE_JWKS_FILE": str(jwks),
        "VKP_DB_DATA_DIR": str(tmp_path / "data"),
        "PATH": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "vkp_cli", "serve", "audit", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "VKP_AUDIT_CHECKPOINT_KEY_FILE is required" in result.stderr
    CheckpointSigner.create_file(tmp_path / "checkpoint.pem")
    process = ServiceProcess(
        "audit", {**env, "VKP_AUDIT_CHECKPOINT_KEY_FILE": str(tmp_path / "checkpoint.pem")}
    )
    try:
        process.wait_serving()
    finally:
        process.send_sigterm()
        assert process.terminate() == 0
