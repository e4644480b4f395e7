"""Ingest's use cases (service.py) with in-memory fakes of the registrar, the registry's
decisions, the audit log and journaling: no server, no database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2, event_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.journaling.v1 import journaling_pb2 as jpb
from vkp.registry.v1 import registry_pb2
from vkp_ingest import convert
from vkp_ingest.domain.alarm import Alarm, AlarmStep
from vkp_ingest.domain.checks import EventRules
from vkp_ingest.domain.model import Registered, Registration, StoredEvent
from vkp_ingest.domain.reasons import Reason
from vkp_ingest.service import IngestService
from vkp_lib.auth import Principal, PrincipalKind
from vkp_lib.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, VkpError
from vkp_lib.sandbox import FJORDVIK, NORDHEIM
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.events import sample_event
from vkp_lib.timestamps import timestamp

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
VENDOR = Principal(
    PrincipalKind.VENDOR, client_id="dosetta-dispenser", organization_number="912340007"
)
SYSTEM = "vendors/912340007/systems/dispenser-cloud"
RULES = EventRules(
    allow_synthetic=True, future_skew=timedelta(minutes=5), max_age=timedelta(days=7)
)


# -- fakes -------------------------------------------------------------------------------------


@dataclass
class FakeRegistrar:
    """Registers as the store does: one event per (vendor system, event id), a repeat or a
    reused id answered from the first; a request's audit record of a municipality kept when it
    registered a new event there."""

    rows: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    requests: list[Registration] = field(default_factory=list)
    audits: list[audit_pb2.AuditRecord] = field(default_factory=list)

    async def submit(self, request: Registration) -> list[Registered]:
        self.requests.append(request)
        results, created = [], set()
        for item in request.events:
            key = (item.vendor_system, item.event_id)
            if key not in self.rows:
                self.rows[key] = (f"id-{len(self.rows) + 1}", item.content_hash)
                results.append(Registered(self.rows[key][0], item.event_id, NOW))
                created.add(item.municipality)
                continue
            id_, stored_hash = self.rows[key]
            same = stored_hash == item.content_hash
            earlier = NOW - timedelta(minutes=1)
            results.append(Registered(id_, item.event_id, earlier, replayed=same, reused=not same))
        self.audits += [audit_pb2.AuditRecord.FromString(request.audits[m]) for m in created]
        return results


@dataclass
class FakeDecisions:
    """Allows the municipalities named, for every service; denies NO_ACCESS elsewhere."""

    allowed: set[str] = field(default_factory=lambda: {FJORDVIK.organization_number})

    async def check(
        self,
        client_id: str,
        municipality: str,
        service_code: common_pb2.ServiceCode.ValueType,
        action: registry_pb2.AccessAction.ValueType,
    ) -> registry_pb2.AccessDecision:
        if municipality in self.allowed:
            return registry_pb2.AccessDecision(allowed=True, vendor_system=SYSTEM)
        return registry_pb2.AccessDecision(
            denial_reason=registry_pb2.DENIAL_REASON_NO_ACCESS, vendor_system=SYSTEM
        )


@dataclass
class FakeAudit:
    records: list[audit_pb2.AuditRecord] = field(default_factory=list)
    down: bool = False

    async def record_many(self, records: Sequence[audit_pb2.AuditRecord]) -> object:
        if self.down:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
            )
        self.records += records
        return None


@dataclass
class FakeEvents:
    stored: dict[str, StoredEvent] = field(default_factory=dict)

    async def find(self, client_id: str, event_id: str) -> StoredEvent | None:
        return self.stored.get(event_id)


@dataclass
class FakeAlarms:
    stored: dict[tuple[str, str], Alarm] = field(default_factory=dict)

    async def find_alarm(self, vendor_system: str, alarm_id: str) -> Alarm | None:
        return self.stored.get((vendor_system, alarm_id))


@dataclass
class FakeJournaling:
    """GetEntry of the entries it has; UNAVAILABLE for any other."""

    entries: dict[str, jpb.Entry] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def GetEntry(self, request: jpb.GetEntryRequest) -> jpb.GetEntryResponse:
        self.asked.append(request.name)
        if request.name not in self.entries:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
            )
        return jpb.GetEntryResponse(entry=self.entries[request.name])


@dataclass
class Ingest:
    registrar: FakeRegistrar = field(default_factory=FakeRegistrar)
    decisions: FakeDecisions = field(default_factory=FakeDecisions)
    audit: FakeAudit = field(default_factory=FakeAudit)
    events: FakeEvents = field(default_factory=FakeEvents)
    alarms: FakeAlarms = field(default_factory=FakeAlarms)
    journaling: FakeJournaling = field(default_factory=FakeJournaling)

    @property
    def service(self) -> IngestService:
        return IngestService(
            registrar=self.registrar,
            events=self.events,
            alarms=self.alarms,
            decisions=self.decisions,
            audit=self.audit,
            journaling=self.journaling,
            rules=RULES,
            clock=lambda: NOW,
        )


def event(
    person: int = 0, *, event_id: str = "", municipality: str = FJORDVIK.organization_number
) -> event_pb2.Event:
    made = sample_event(
        "medication_dispense",
        event_id=event_id or f"evt-{person}",
        national_id=TEST_PEOPLE[person].national_id,
        at=NOW - timedelta(minutes=5),
    )
    made.municipality = municipality
    return made


# -- SubmitEvents ------------------------------------------------------------------------------


async def test_one_bad_event_of_a_batch_refuses_only_itself() -> None:
    ingest = Ingest()
    events = [event(0), event(1), event(2)]
    events[1].occurred_time.CopyFrom(timestamp(NOW + timedelta(hours=1)))
    outcomes = await ingest.service.submit_events(VENDOR, events)
    assert [type(o) for o in outcomes] == [Registered, InvalidArgument, Registered]
    refused = outcomes[1]
    assert isinstance(refused, VkpError)
    assert refused.reason == Reason.EVENT_IN_FUTURE
    assert [v.field for v in refused.violations] == ["events[1].occurred_time"]
    (request,) = ingest.registrar.requests
    assert [i.event_id for i in request.events] == ["evt-0", "evt-2"]


async def test_a_field_rule_broken_by_one_event_names_its_path_in_the_batch() -> None:
    ingest = Ingest()
    events = [event(0), event(1)]
    events[0].patient.value = "123"
    outcomes = await ingest.service.submit_events(VENDOR, events)
    refused = outcomes[0]
    assert isinstance(refused, InvalidArgument)
    assert (refused.reason, [v.field for v in refused.violations]) == (
        "INVALID_NATIONAL_ID",
        ["events[0].patient.value"],
    )
    assert isinstance(outcomes[1], Registered)


async def test_a_single_event_is_refused_by_raising_its_reason_named_under_event() -> None:
    ingest = Ingest()
    wrong = event(0)
    wrong.patient.type = common_pb2.NATIONAL_ID_TYPE_DNR
    with pytest.raises(InvalidArgument) as caught:
        await ingest.service.submit_event(VENDOR, wrong)
    assert caught.value.reason == Reason.NATIONAL_ID_TYPE_MISMATCH
    assert [v.field for v in caught.value.violations] == ["event.patient.type"]
    assert ingest.registrar.requests == []


async def test_a_single_events_field_rules_are_checked_unless_the_runner_has_checked_them() -> None:
    ingest = Ingest()
    spaced = event(0, event_id="has a space")
    with pytest.raises(InvalidArgument) as caught:
        await ingest.service.submit_event(VENDOR, spaced)
    assert [v.field for v in caught.value.violations] == ["event.event_id"]
    # The servicer's path: the runner refused such a request before; the service trusts that.
    registered = await ingest.service.submit_event(VENDOR, spaced, rules_checked=True)
    assert registered.event_id == "has a space"


async def test_a_denial_is_refused_with_the_registrys_reason_and_audited_once() -> None:
    ingest = Ingest()
    elsewhere = event(3, municipality=NORDHEIM.organization_number)
    outcomes = await ingest.service.submit_events(VENDOR, [elsewhere, event(4)])
    denial = outcomes[0]
    assert isinstance(denial, PermissionDenied)
    assert denial.reason == "NO_ACCESS"
    (record,) = ingest.audit.records
    assert (record.outcome, record.outcome_reason, record.municipality) == (
        audit_pb2.AUDIT_OUTCOME_DENIED,
        "NO_ACCESS",
        NORDHEIM.organization_number,
    )
    assert [p.value for p in record.patients] == [TEST_PEOPLE[3].national_id]
    assert (record.actor.client_id, record.actor.vendor_system) == (VENDOR.client_id, SYSTEM)
    assert [r.municipality for r in ingest.registrar.audits] == [FJORDVIK.organization_number]


async def test_a_denial_is_answered_while_the_audit_log_cannot_be_reached() -> None:
    ingest = Ingest(audit=FakeAudit(down=True))
    with pytest.raises(PermissionDenied):
        await ingest.service.submit_event(VENDOR, event(municipality=NORDHEIM.organization_number))


async def test_accepted_events_of_two_municipalities_give_one_audit_record_each() -> None:
    both = {FJORDVIK.organization_number, NORDHEIM.organization_number}
    ingest = Ingest(decisions=FakeDecisions(both))
    events = [
        event(0),
        event(1, municipality=NORDHEIM.organization_number),
        event(2),
    ]
    outcomes = await ingest.service.submit_events(VENDOR, events)
    assert all(isinstance(o, Registered) for o in outcomes)
    records = {r.municipality: r for r in ingest.registrar.audits}
    assert set(records) == both
    fjordvik = records[FJORDVIK.organization_number]
    nordheim = records[NORDHEIM.organization_number]
    assert [p.value for p in fjordvik.patients] == [
        TEST_PEOPLE[0].national_id,
        TEST_PEOPLE[2].national_id,
    ]
    assert [p.value for p in nordheim.patients] == [TEST_PEOPLE[1].national_id]
    assert {r.outcome for r in records.values()} == {audit_pb2.AUDIT_OUTCOME_ALLOWED}
    assert ingest.audit.records == []  # the accepted ones go through the outbox


async def test_a_repeated_event_returns_the_original_receipt() -> None:
    ingest = Ingest()
    first = await ingest.service.submit_event(VENDOR, event(0))
    again = await ingest.service.submit_event(VENDOR, event(0))
    assert (again.id, again.replayed, again.reused) == (first.id, True, False)
    assert again.receive_time < first.receive_time  # the original's, as the store keeps it
    assert len(ingest.registrar.rows) == 1


async def test_a_reused_event_id_is_refused_event_id_reused() -> None:
    ingest = Ingest()
    await ingest.service.submit_event(VENDOR, event(0))
    other = event(0)
    other.medication_dispense.medication_text = "Kveldsdose"
    with pytest.raises(AlreadyExists) as caught:
        await ingest.service.submit_event(VENDOR, other)
    assert caught.value.reason == Reason.EVENT_ID_REUSED


async def test_the_callers_trace_goes_with_the_event_and_into_its_audit_record() -> None:
    ingest = Ingest()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("SubmitEvents") as span:
        await ingest.service.submit_events(VENDOR, [event(0)])
    context = span.get_span_context()
    (request,) = ingest.registrar.requests
    assert request.events[0].traceparent == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    (record,) = ingest.registrar.audits
    assert record.trace_id == f"{context.trace_id:032x}"


async def test_outside_a_trace_an_event_carries_no_traceparent() -> None:
    ingest = Ingest()
    await ingest.service.submit_events(VENDOR, [event(0)])
    (request,) = ingest.registrar.requests
    assert request.events[0].traceparent == ""
    assert ingest.registrar.audits[0].trace_id == ""


# -- GetEventStatus ----------------------------------------------------------------------------


async def test_an_event_the_vendor_never_sent_is_event_not_found() -> None:
    with pytest.raises(NotFound) as caught:
        await Ingest().service.event_status(VENDOR.client_id, "evt-unknown")
    assert caught.value.reason == Reason.EVENT_NOT_FOUND


async def test_an_event_not_yet_handed_over_is_registered_without_asking_journaling() -> None:
    ingest = Ingest()
    ingest.events.stored["evt-0"] = StoredEvent("id-1", sent=False, receive_time=NOW)
    stored, entry = await ingest.service.event_status(VENDOR.client_id, "evt-0")
    status = convert.event_status("evt-0", stored, entry)
    assert (status.name, status.state) == ("events/id-1", common_pb2.EVENT_STATE_REGISTERED)
    assert status.state_time.ToDatetime(tzinfo=UTC) == NOW
    assert ingest.journaling.asked == []


async def test_a_handed_over_event_has_journalings_state_of_its_entry() -> None:
    ingest = Ingest()
    ingest.events.stored["evt-0"] = StoredEvent("id-1", sent=True, receive_time=NOW)
    later = NOW + timedelta(seconds=30)
    ingest.journaling.entries["entries/id-1"] = jpb.Entry(
        name="entries/id-1",
        state=common_pb2.EVENT_STATE_RETRYING,
        attempts=2,
        last_error_reason="EPJ_TIMEOUT",
        update_time=timestamp(later),
        next_attempt_time=timestamp(later + timedelta(seconds=10)),
    )
    status = convert.event_status("evt-0", *await ingest.service.event_status("c", "evt-0"))
    assert (status.state, status.attempts, status.last_error_reason) == (
        common_pb2.EVENT_STATE_RETRYING,
        2,
        "EPJ_TIMEOUT",
    )
    assert status.state_time.ToDatetime(tzinfo=UTC) == later
    assert status.HasField("next_attempt_time")


async def test_a_handed_over_event_is_queued_while_journaling_cannot_be_asked() -> None:
    ingest = Ingest()
    ingest.events.stored["evt-0"] = StoredEvent("id-1", sent=True, receive_time=NOW)
    status = convert.event_status("evt-0", *await ingest.service.event_status("c", "evt-0"))
    assert status.state == common_pb2.EVENT_STATE_QUEUED
    assert ingest.journaling.asked == ["entries/id-1"]


# -- alarms ------------------------------------------------------------------------------------


async def test_an_accepted_alarm_step_carries_its_facts_into_the_registration() -> None:
    ingest = Ingest()
    step = sample_event(
        "alarm_step",
        event_id="evt-alarm",
        national_id=TEST_PEOPLE[1].national_id,
        at=NOW - timedelta(minutes=3),
    )
    step.municipality = FJORDVIK.organization_number
    step.alarm_step.alarm_id = "alarm-7"
    step.alarm_step.closes_alarm = True
    await ingest.service.submit_events(VENDOR, [step, event(0)])
    (request,) = ingest.registrar.requests
    assert [item.alarm for item in request.events] == [
        AlarmStep(
            vendor_system=SYSTEM,
            alarm_id="alarm-7",
            municipality=FJORDVIK.organization_number,
            patient=TEST_PEOPLE[1].national_id,
            alert_code="3",
            occurred_time=NOW - timedelta(minutes=3),
            closes=True,
        ),
        None,  # a medication dispense has none
    ]


def _alarm(closed: datetime | None) -> Alarm:
    return Alarm(
        municipality=FJORDVIK.organization_number,
        patient=TEST_PEOPLE[1].national_id,
        alert_code="3",
        opened_time=NOW - timedelta(minutes=9),
        last_step_time=NOW - timedelta(minutes=2),
        closed_time=closed,
    )


async def test_check_open_alarm_answers_the_alarm_of_the_patient_asked_about() -> None:
    ingest = Ingest()
    ingest.alarms.stored[(SYSTEM, "open")] = _alarm(None)
    ingest.alarms.stored[(SYSTEM, "closed")] = closed = _alarm(NOW - timedelta(minutes=4))
    fjordvik, patient = FJORDVIK.organization_number, TEST_PEOPLE[1].national_id
    opened = await ingest.service.check_open_alarm(SYSTEM, "open", fjordvik, patient)
    answer = convert.open_alarm(opened)
    assert answer.open
    assert answer.opened_time.ToDatetime(tzinfo=UTC) == NOW - timedelta(minutes=9)
    assert answer.last_step_time.ToDatetime(tzinfo=UTC) == NOW - timedelta(minutes=2)
    assert not answer.HasField("closed_time")
    answer = convert.open_alarm(
        await ingest.service.check_open_alarm(SYSTEM, "closed", fjordvik, patient)
    )
    assert not answer.open
    assert answer.closed_time.ToDatetime(tzinfo=UTC) == closed.closed_time


async def test_check_open_alarm_shows_nothing_of_another_patients_or_municipalitys_alarm() -> None:
    ingest = Ingest()
    ingest.alarms.stored[(SYSTEM, "open")] = _alarm(None)
    fjordvik, patient = FJORDVIK.organization_number, TEST_PEOPLE[1].national_id
    asked = [
        (SYSTEM, "open", fjordvik, TEST_PEOPLE[2].national_id),  # another patient
        (SYSTEM, "open", NORDHEIM.organization_number, patient),  # another municipality
        ("vendors/923450004/systems/other", "open", fjordvik, patient),  # another vendor system
        (SYSTEM, "never-seen", fjordvik, patient),
    ]
    for question in asked:
        assert await ingest.service.check_open_alarm(*question) is None
    assert convert.open_alarm(None) == pb.CheckOpenAlarmResponse(open=False)
