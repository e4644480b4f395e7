"""Lookup over the whole hub (its cache in Redis, ingest's open-alarm query, the audit service):
`GetPatient` and `GetAlarmContext` at 16 in flight, each answered only once its audit record is
committed (lookup fails closed on audit), against the no-op RPC measured in the same run.

- **Cache hits**: the sandbox response centre's alarm context (service TA) and the dispenser
  vendor's patient (service MD), for the busy municipality's patients with that service, every
  one looked up once before the clock starts (the cache filled; each GetAlarmContext patient
  given an open alarm first: a step through ingest, no closing step). Then a closed loop over
  them: every read a hit, every call one audit record committed, ingest asked whether the alarm
  is open on each GetAlarmContext.
- **Cold misses**: the simulator adds `COLD_LATENCY_MS` to every request of the municipality.
  Rounds: the bench's cache keys deleted from Redis and the simulator's counters zeroed, then
  16 calls at once spread over the patients (several callers per key), until `seconds` have
  passed. Every call misses; the simulator's counters then say how many EPJ requests each kind
  of data took per round, against the keys it had (one fetch per key, across the callers).

Every request is encoded before the clock starts. Before the clock, one call of each with a
request id is found in the audit log by that id, so the answers measured are audited ones.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from hub import BUSY, Hub, patients
from load import ClientCpu, Load, RawCall, closed_loop, raw_call
from redis.asyncio import Redis
from report import Row

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp.common.v1 import common_pb2
from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp.lookup.v1 import lookup_pb2 as pb
from vkp_epj_sim import SeedPatient
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import DISPENSER, RESPONSE_CENTRE, SandboxVendorSystem
from vkp_lib.testing.events import sample_alarm

SERVICE = "/vkp.lookup.v1.LookupService/"
GET_PATIENT = SERVICE + "GetPatient"
GET_ALARM_CONTEXT = SERVICE + "GetAlarmContext"
#: What the simulator adds to each request of the municipality in the cold rows.
COLD_LATENCY_MS = 50
#: DESIGN.md §7: a cache hit, its audit record committed, at >= half the no-op server's
#: requests/s, its p99 at most three times the no-op's.
HIT_RATE_TARGET, HIT_P99_TARGET = 0.50, 3.0
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Kind:
    """One of the two lookups the rows measure."""

    key: str  # "patient" or "alarm"
    method: str
    vendor: SandboxVendorSystem
    service_code: common_pb2.ServiceCode.ValueType
    service_type: str  # the EpisodeOfCare type the sandbox maps to the service code
    #: The simulator's counters one cold lookup of a patient moves, each once per key: every
    #: kind of data but the GP (by the GP's id, counted apart).
    per_patient: tuple[str, ...]


PATIENT = Kind(
    "patient",
    GET_PATIENT,
    DISPENSER,
    common_pb2.SERVICE_CODE_MD,
    "27",
    ("Patient identifier", "EpisodeOfCare patient"),
)
ALARM = Kind(
    "alarm",
    GET_ALARM_CONTEXT,
    RESPONSE_CENTRE,
    common_pb2.SERVICE_CODE_TA,
    "6",
    (
        "Patient identifier",
        "EpisodeOfCare patient",
        "RelatedPerson patient",
        "CarePlan category subject",
        "AllergyIntolerance patient",
        "Flag subject",
    ),
)
KINDS = (ALARM, PATIENT)
#: The GP's read, by its logical id (one key per GP).
PRACTITIONER = "Practitioner _id"


@dataclass(frozen=True)
class Cold:
    """The cold rows' figures: the calls, and the EPJ requests against the keys they had."""

    load: Load
    rounds: int
    #: Per counter (`<type> <parameters>`): EPJ requests over all rounds, and the keys.
    fetches: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)

    @property
    def fetches_per_key(self) -> float:
        """EPJ requests per key over every kind (1.0: each key fetched once per round)."""
        keys = sum(self.keys.values())
        return sum(self.fetches.values()) / keys if keys else float("nan")


def _ratio_met(ratio: float, target: float) -> bool:
    return not math.isnan(ratio) and ratio >= target


def kind_patients(kind: Kind) -> list[SeedPatient]:
    found = [p for p in patients(BUSY) if kind.service_type in p.active_service_types]
    if not found:
        raise RuntimeError(f"the sandbox has no patient of service type {kind.service_type}")
    return found


def _metadata(hub: Hub, vendor: SandboxVendorSystem, scope: str = Scopes.LOOKUP) -> Metadata:
    token = hub.issuer.vendor_token(
        vendor.client_ids[0], [scope], organization_number=vendor.vendor_organization_number
    )
    return (("authorization", f"Bearer {token}"),)


def _request(kind: Kind, patient: SeedPatient, alarm_ids: dict[str, str]) -> bytes:
    municipality = BUSY.organization_number
    national_id = common_pb2.NationalId(value=patient.national_id)
    if kind is ALARM:
        return pb.GetAlarmContextRequest(
            municipality=municipality,
            service_code=kind.service_code,
            patient=national_id,
            alarm_id=alarm_ids[patient.id],
        ).SerializeToString()
    return pb.GetPatientRequest(
        municipality=municipality, service_code=kind.service_code, patient=national_id
    ).SerializeToString()


async def open_alarms(hub: Hub, chosen: Sequence[SeedPatient]) -> dict[str, str]:
    """An open alarm of the response centre for each patient: its first step through the hub's
    ingest (no closing step). The alarm id of each patient (by its logical id)."""
    metadata = _metadata(hub, RESPONSE_CENTRE, Scopes.INGEST)
    alarm_ids = {p.id: f"bench-lookup-{uuid.uuid4().hex[:16]}" for p in chosen}
    async with grpc.aio.insecure_channel(hub.address("ingest")) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        for patient in chosen:
            first = sample_alarm(
                alarm_id=alarm_ids[patient.id],
                national_id=patient.national_id,
                municipality=BUSY.organization_number,
                at=datetime.now(UTC) - timedelta(seconds=5),
            )[0]
            assert not first.alarm_step.closes_alarm
            await ingest.SubmitEvent(ingest_pb2.SubmitEventRequest(event=first), metadata=metadata)
    return alarm_ids


async def _audited(hub: Hub, call: RawCall, request: bytes, metadata: Metadata) -> None:
    """One call with a request id of its own, then its audit record found by that id (the
    patient's access log, newest first)."""
    request_id = f"bench-{uuid.uuid4().hex}"
    await call(request, metadata=(*metadata, ("x-request-id", request_id)))
    patient = pb.GetPatientRequest.FromString(request).patient  # the same field in both
    reader = hub.issuer.vendor_token(
        "bench-auditor", [Scopes.AUDIT_READ], organization_number=BUSY.organization_number
    )
    async with grpc.aio.insecure_channel(hub.address("audit")) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        page = await audit.Query(
            audit_pb2.QueryRequest(
                municipality=BUSY.organization_number, patient=patient, page_size=20
            ),
            metadata=(("authorization", f"Bearer {reader}"),),
        )
    if not any(
        r.request_id == request_id and r.outcome == audit_pb2.AUDIT_OUTCOME_ALLOWED
        for r in page.records
    ):
        raise RuntimeError("a lookup was answered without its audit record")


async def _forget(hub: Hub) -> int:
    """Deletes the lookup cache's values in Redis (the bench's prefix): every key cold again."""
    redis = Redis.from_url(hub.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{hub.redis_prefix}cache:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        return len(keys)
    finally:
        await redis.aclose()


async def hit_load(
    hub: Hub,
    kind: Kind,
    alarm_ids: dict[str, str],
    seconds: float,
    concurrency: int,
    rate_bound: float,
) -> Load:
    chosen = kind_patients(kind)
    metadata = _metadata(hub, kind.vendor)
    encoded = [_request(kind, p, alarm_ids) for p in chosen]
    warm_up = max(len(chosen), 50 if seconds >= 0.5 else 10)
    count = warm_up + int(rate_bound * seconds * 1.2) + concurrency
    requests = [encoded[i % len(encoded)] for i in range(count)]
    async with grpc.aio.insecure_channel(hub.address("lookup")) as channel:
        call = raw_call(channel, kind.method)
        await _audited(hub, call, encoded[0], metadata)
        return await closed_loop(
            call, requests, seconds, concurrency, metadata=metadata, warm_up=warm_up
        )


async def _cold(
    hub: Hub, kind: Kind, alarm_ids: dict[str, str], seconds: float, concurrency: int
) -> Cold:
    chosen = kind_patients(kind)
    metadata = _metadata(hub, kind.vendor)
    encoded = [_request(kind, p, alarm_ids) for p in chosen]
    round_requests = [encoded[i % len(encoded)] for i in range(concurrency)]
    municipality = BUSY.municipality_number
    keys = dict.fromkeys((f"{municipality} {c}" for c in kind.per_patient), len(chosen))
    if kind is ALARM:
        keys[f"{municipality} {PRACTITIONER}"] = len({p.gp.id for p in chosen})
    fetches: Counter[str] = Counter()
    latencies: list[float] = []
    rounds = 0
    async with (
        grpc.aio.insecure_channel(hub.address("lookup")) as channel,
        hub.epj() as epj,
    ):
        call = raw_call(channel, kind.method)

        async def one(request: bytes) -> None:
            start = time.perf_counter()
            await call(request, metadata=metadata)
            latencies.append(time.perf_counter() - start)

        faults = f"/_control/{municipality}/faults"
        (await epj.put(faults, json={"latency_ms": COLD_LATENCY_MS})).raise_for_status()
        try:
            cpu = ClientCpu()
            spent = 0.0
            while spent < seconds or rounds == 0:
                await _forget(hub)
                (await epj.delete("/_control/counters")).raise_for_status()
                began = time.perf_counter()
                await asyncio.gather(*(one(r) for r in round_requests))
                spent += time.perf_counter() - began
                rounds += 1
                counted = (await epj.get("/_control/counters")).json()
                fetches.update({c: int(counted.get(c, 0)) for c in keys})
            client_cpu = cpu.share()
        finally:
            (await epj.delete(faults)).raise_for_status()
    load = Load(len(latencies), spent, latencies, client_cpu)
    return Cold(load, rounds, dict(fetches), {c: n * rounds for c, n in keys.items()})


def _hit_row(kind: Kind, load: Load, base: Load, database: str, concurrency: int) -> Row:
    ratio = load.rate / base.rate
    met = _ratio_met(ratio, HIT_RATE_TARGET) and load.p99_ms <= HIT_P99_TARGET * base.p99_ms
    return Row(
        key=f"lookup.{kind.key}.hit",
        name=f"lookup {kind.method.rpartition('/')[2]}, cache hit, audited, "
        f"{concurrency} in flight",
        database=database,
        value=load.rate,
        unit="req/s",
        ratio=ratio,
        ratio_of="no-op",
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        target=f"≥ {HIT_RATE_TARGET:.2f} x no-op; p99 ≤ {HIT_P99_TARGET:g} x no-op's",
        met=met,
        client_cpu=load.client_cpu,
        details={
            "calls": load.calls,
            "seconds": load.seconds,
            "baseline_rate": base.rate,
            "baseline_p99_ms": base.p99_ms,
            "p99_of_baseline_p99": load.p99_ms / base.p99_ms,
        },
    )


def _cold_row(kind: Kind, cold: Cold, database: str, concurrency: int) -> Row:
    load = cold.load
    return Row(
        key=f"lookup.{kind.key}.cold",
        name=f"lookup {kind.method.rpartition('/')[2]}, cold (EPJ +{COLD_LATENCY_MS} ms), "
        f"{concurrency} at once",
        database=database,
        value=load.rate,
        unit="req/s",
        shown=f"{load.rate:,.0f} req/s, {cold.fetches_per_key:.2f} EPJ fetches per key",
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        target="1 EPJ fetch per key",
        met=cold.fetches == cold.keys,
        client_cpu=load.client_cpu,
        details={
            "calls": load.calls,
            "rounds": cold.rounds,
            "epj_latency_ms": COLD_LATENCY_MS,
            "fetches_per_key": cold.fetches_per_key,
            "epj_fetches": cold.fetches,
            "keys": cold.keys,
        },
    )


def lookup_rows(
    hub: Hub, seconds: float, concurrency: int, baseline: Callable[[], Load]
) -> list[Row]:
    """The cache-hit rows of GetAlarmContext and GetPatient, each beside the no-op server
    measured right before it (`baseline`), then their cold misses."""
    rows: list[Row] = []
    alarm_ids = asyncio.run(open_alarms(hub, kind_patients(ALARM)))
    for kind in KINDS:
        base = baseline()
        load = asyncio.run(hit_load(hub, kind, alarm_ids, seconds, concurrency, base.rate))
        rows.append(_hit_row(kind, load, base, hub.database, concurrency))
    for kind in KINDS:
        cold = asyncio.run(_cold(hub, kind, alarm_ids, seconds, concurrency))
        rows.append(_cold_row(kind, cold, hub.database, concurrency))
    return rows
