"""Alarm step to handling log journaled after close, the whole hub: `count` alarms of the sandbox
response centre (service TA) for the busy municipality's patients, all at once, each its five
steps (vkp_lib.testing.events.sample_alarm: registered ... action, the last closing the alarm)
one after another through ingest's SubmitEvent, its outbox relay, journaling (which holds the
steps, cuts the alarm's segment once the settle window after the closing step has passed, and
queues its handling log) and the FHIR adapter into the EPJ simulator. Then the wait until every
alarm's log (its Composition) is stored, or none came for `stall_seconds`.

The figure per alarm: from the closing step's acceptance (its receipt's receive time) to its
Composition stored in the simulator (meta.lastUpdated), minus nothing: the settle window, the
hub's VKP_JOURNALING_ALARM_SETTLE_SECONDS (hub.ALARM_SETTLE_SECONDS, short for the bench), is
part of it. Lost: an alarm without a log when the wait ended; duplicated: a log stored twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
from hub import BUSY, Hub, patients
from load import percentile
from notes import NOTE_SYSTEM

from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp_journaling.domain.alarm import log_entry_id
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import RESPONSE_CENTRE
from vkp_lib.testing.events import sample_alarm

#: The sample alarm's steps span 12 minutes; they happened before now (a future time is refused).
STEPS_AGO = timedelta(minutes=15)


@dataclass(frozen=True)
class AlarmFigures:
    alarms: int
    journaled: int
    lost: int
    duplicated: int
    p50_ms: float
    p99_ms: float
    #: The steps refused at the door (none expected).
    refused: int
    wait_seconds: float


async def _send(
    stub: Any,
    metadata: tuple[tuple[str, str], ...],
    alarm_id: str,
    national_id: str,
) -> float | None:
    """One alarm's steps, one after another; the closing step's receive time (epoch seconds),
    None when a step was refused."""
    closed: float | None = None
    for step in sample_alarm(
        alarm_id=alarm_id,
        national_id=national_id,
        municipality=BUSY.organization_number,
        at=datetime.now(UTC) - STEPS_AGO,
    ):
        step.event_id = f"{alarm_id}-{step.alarm_step.timeline_code}"
        try:
            answer = await stub.SubmitEvent(pb.SubmitEventRequest(event=step), metadata=metadata)
        except grpc.aio.AioRpcError:
            return None
        closed = answer.receipt.receive_time.ToNanoseconds() / 1e9
    return closed


async def _logs(epj: httpx.AsyncClient) -> list[tuple[str, float]]:
    """Every handling log's Composition in the simulator: (its entry id, when it was stored)."""
    found: list[tuple[str, float]] = []
    url: str | None = "/Composition"
    params: dict[str, str] | None = {"identifier": f"{NOTE_SYSTEM}|", "_count": "1000"}
    while url:
        response = await epj.get(url, params=params)
        response.raise_for_status()
        bundle = response.json()
        for entry in bundle.get("entry", ()):
            resource = entry["resource"]
            when = datetime.fromisoformat(resource["meta"]["lastUpdated"]).timestamp()
            identifier = resource.get("identifier", {})
            if identifier.get("system") == NOTE_SYSTEM:
                found.append((identifier["value"].partition("/")[0], when))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        params = None
    return found


async def _wait(
    epj: httpx.AsyncClient, wanted: set[str], stall_seconds: float, poll_seconds: float
) -> tuple[list[tuple[str, float]], float]:
    """The logs once all wanted are in, or when none came for `stall_seconds`; and the wait."""
    start = time.monotonic()
    seen, progress = -1, start
    while True:
        logs = [(i, t) for i, t in await _logs(epj) if i in wanted]
        have = len({i for i, _ in logs})
        if have >= len(wanted):
            break
        now = time.monotonic()
        if have != seen:
            seen, progress = have, now
        elif now - progress > stall_seconds:
            break
        await asyncio.sleep(poll_seconds)
    return logs, time.monotonic() - start


def measure_alarms(hub: Hub, count: int, stall_seconds: float, poll_seconds: float) -> AlarmFigures:
    """`count` alarms at once through the whole hub, each to its handling log in the EPJ."""
    ids = [p.national_id for p in patients(BUSY)]
    token = hub.issuer.vendor_token(RESPONSE_CENTRE.client_ids[0], [Scopes.INGEST])
    metadata = (("authorization", f"Bearer {token}"),)
    alarm_ids = [f"bench-alarm-{uuid.uuid4().hex[:16]}" for _ in range(count)]

    async def run() -> AlarmFigures:
        async with grpc.aio.insecure_channel(hub.address("ingest")) as channel:
            stub: Any = ingest_pb2_grpc.IngestServiceStub(channel)
            closed = await asyncio.gather(
                *(
                    _send(stub, metadata, alarm_id, ids[n % len(ids)])
                    for n, alarm_id in enumerate(alarm_ids)
                )
            )
        accepted = {
            log_entry_id(RESPONSE_CENTRE.name, alarm_id, 1): at
            for alarm_id, at in zip(alarm_ids, closed, strict=True)
            if at is not None
        }
        async with hub.epj() as epj:
            logs, waited = await _wait(epj, set(accepted), stall_seconds, poll_seconds)
        stored = Counter(i for i, _ in logs)
        first: dict[str, float] = {}
        for entry_id, when in logs:
            first[entry_id] = min(when, first.get(entry_id, when))
        latencies = [(first[i] - accepted[i]) * 1000 for i in accepted if i in first]
        return AlarmFigures(
            alarms=count,
            journaled=len(first),
            lost=len(accepted) - len(first),
            duplicated=sum(n - 1 for n in stored.values()),
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            refused=count - len(accepted),
            wait_seconds=waited,
        )

    return asyncio.run(run())
