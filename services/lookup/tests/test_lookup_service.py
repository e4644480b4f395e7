"""Lookup's use cases over fakes of the EPJ, the registry, ingest and the audit log: the order of
the checks, one audit record per lookup, and no answer without its record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2
from vkp_lib.auth import Principal, PrincipalKind
from vkp_lib.errors import VkpError
from vkp_lib.fhir import EpjTimeout, EpjUnavailable
from vkp_lib.national_id import IDENTIFIER_SYSTEMS, NationalIdKind
from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lookup.domain.model import Freshness, Rule
from vkp_lookup.domain.need import AlarmState
from vkp_lookup.service import Call, LookupService
from vkp_lookup.settings import LookupSettings
from vkp_lookup.store import Read, Wanted

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
MUNICIPALITY = "964120005"
PATIENT = TEST_PEOPLE[0].national_id
FNR = IDENTIFIER_SYSTEMS[NationalIdKind.FNR]
VENDOR = Principal(PrincipalKind.VENDOR, client_id="dosetta-dispenser", scopes=frozenset())
Json = dict[str, Any]


def _episode(type_code: str, status: str = "active") -> Json:
    return {
        "resourceType": "EpisodeOfCare",
        "id": f"eoc-{type_code}",
        "status": status,
        "type": [{"coding": [{"system": "urn:x", "code": type_code}]}],
        "patient": {"reference": "Patient/p1"},
        "period": {"start": "2020-01-01"},
    }


class FakeRecords:
    """The EPJ's reads (`reads`: the kinds fetched); with `cache`, every `cached` call finds the
    kinds it asks for fresh (`peeks`: the kinds each call asked for)."""

    def __init__(
        self, episodes: list[Json], fail: Exception | None = None, *, cache: bool = False
    ) -> None:
        self._episodes = episodes
        self.fail = fail
        self.cache = cache
        self.reads: list[str] = []
        self.peeks: list[list[str]] = []

    def _data(self, kind: str, parts: Sequence[str]) -> list[Json]:
        if kind == "patient":
            system, national_id = parts
            resource = {
                "resourceType": "Patient",
                "id": "p1",
                "identifier": [{"system": system, "value": national_id}],
                "name": [{"family": "Testesen", "given": ["Test"]}],
            }
            return [resource]
        if kind in ("episodes", "active_episodes"):
            return self._episodes
        return []

    def _read(self, kind: str, *parts: str) -> Read:
        self.reads.append(kind)
        if self.fail is not None:
            raise self.fail
        return Read(self._data(kind, parts), Freshness(NOW - timedelta(seconds=3)))

    async def cached(self, municipality: str, wanted: Sequence[Wanted]) -> dict[Wanted, Read]:
        self.peeks.append([kind for kind, _ in wanted])
        if not self.cache:
            return {}
        fetched = Freshness(NOW - timedelta(seconds=1))
        return {(kind, parts): Read(self._data(kind, parts), fetched) for kind, parts in wanted}

    async def patient(self, municipality: str, system: str, national_id: str) -> Read:
        return self._read("patient", system, national_id)

    async def episodes(self, municipality: str, patient_id: str) -> Read:
        return self._read("episodes")

    async def visit_plans(self, municipality: str, patient_id: str) -> Read:
        return self._read("visit_plans")

    async def next_of_kin(self, municipality: str, patient_id: str) -> Read:
        return self._read("next_of_kin")

    async def critical(self, municipality: str, patient_id: str) -> Read:
        return self._read("critical")

    async def practitioner(self, municipality: str, practitioner_id: str) -> Read:
        return self._read("practitioner")

    async def active_episodes(self, municipality: str) -> Read:
        return self._read("active_episodes")

    async def patients(self, municipality: str, patient_ids: Sequence[str]) -> Read:
        return self._read("patients")


class FakeDecisions:
    def __init__(self, allowed: bool = True) -> None:
        self.allowed = allowed

    async def check(
        self,
        client_id: str,
        municipality: str,
        service_code: common_pb2.ServiceCode.ValueType,
        action: registry_pb2.AccessAction.ValueType,
    ) -> registry_pb2.AccessDecision:
        if not self.allowed:
            return registry_pb2.AccessDecision(
                allowed=False,
                denial_reason=registry_pb2.DENIAL_REASON_NO_ACCESS,
                vendor_system="vendors/912340007/systems/dispenser-cloud",
            )
        return registry_pb2.AccessDecision(
            allowed=True,
            agreement="municipalities/964120005/agreements/a",
            vendor_system="vendors/912340007/systems/dispenser-cloud",
            service_type_patterns=["27", "6"],
        )


class FakeAlarms:
    def __init__(self, state: AlarmState | None) -> None:
        self.state_ = state

    async def state(
        self, *, vendor_system: str, alarm_id: str, patient: str, municipality: str
    ) -> AlarmState | None:
        return self.state_


class FakeAudit:
    def __init__(self, *, fail: bool = False) -> None:
        self.records: list[audit_pb2.AuditRecord] = []
        self.fail = fail

    async def record(self, record: audit_pb2.AuditRecord) -> object:
        if self.fail:
            raise RuntimeError("the audit client is closed")
        self.records.append(record)
        return None


def service(
    records: FakeRecords,
    audit: FakeAudit,
    *,
    decisions: FakeDecisions | None = None,
    alarm: AlarmState | None = None,
    grace: float = 120.0,
) -> LookupService:
    return LookupService(
        LookupSettings(alarm_grace_seconds=grace),
        records=records,
        decisions=decisions or FakeDecisions(),
        alarms=FakeAlarms(alarm),
        audit=audit,
        allow_synthetic=True,
        clock=lambda: NOW,
    )


def call(alarm_id: str = "") -> Call:
    code = common_pb2.SERVICE_CODE_TA if alarm_id else common_pb2.SERVICE_CODE_MD
    method = "GetAlarmContext" if alarm_id else "GetPatient"
    return Call(VENDOR, MUNICIPALITY, code, method, alarm_id)


async def test_an_answer_names_its_rule_and_episode_and_is_recorded_once() -> None:
    audit = FakeAudit()
    answer = await service(FakeRecords([_episode("27")]), audit).get_patient(call(), PATIENT)
    assert (answer.basis.rule, answer.basis.episode.episode_id) == (Rule.SERVICE_NEED, "eoc-27")
    assert answer.value.national_id == PATIENT
    (record,) = audit.records
    assert record.outcome == audit_pb2.AUDIT_OUTCOME_ALLOWED
    assert record.access_basis == "SERVICE_NEED EpisodeOfCare/eoc-27"
    assert record.outcome_reason == ""
    assert [p.value for p in record.patients] == [PATIENT]


async def test_no_active_episode_of_a_mapped_type_is_missing_active_service() -> None:
    audit = FakeAudit()
    records = FakeRecords([_episode("28"), _episode("27", status="finished")])
    with pytest.raises(VkpError) as caught:
        await service(records, audit).get_patient(call(), PATIENT)
    assert caught.value.reason == "MISSING_ACTIVE_SERVICE"
    (record,) = audit.records
    assert record.outcome == audit_pb2.AUDIT_OUTCOME_DENIED


async def test_a_registry_denial_reads_nothing_from_the_epj() -> None:
    audit, records = FakeAudit(), FakeRecords([_episode("27")])
    with pytest.raises(VkpError) as caught:
        await service(records, audit, decisions=FakeDecisions(allowed=False)).get_patient(
            call(), PATIENT
        )
    assert caught.value.reason == "NO_ACCESS"
    assert records.reads == []
    assert [r.outcome_reason for r in audit.records] == ["NO_ACCESS"]


async def test_the_alarm_window_is_checked_before_the_epj_is_read() -> None:
    audit, records = FakeAudit(), FakeRecords([_episode("6")])
    with pytest.raises(VkpError) as caught:
        await service(records, audit, alarm=None).get_alarm_context(call("a-1"), PATIENT)
    assert caught.value.reason == "NO_OPEN_ALARM"
    assert records.reads == []
    assert len(audit.records) == 1


@pytest.mark.parametrize(
    ("closed_ago", "grace", "rule"),
    [(None, 10, Rule.OPEN_ALARM), (30, 60, Rule.ALARM_GRACE), (30, 10, None)],
)
async def test_the_alarm_rule_follows_the_configured_grace(
    closed_ago: int | None, grace: float, rule: Rule | None
) -> None:
    state = (
        AlarmState(open=True)
        if closed_ago is None
        else AlarmState(open=False, close_time=NOW - timedelta(seconds=closed_ago))
    )
    lookup = service(FakeRecords([_episode("6")]), FakeAudit(), alarm=state, grace=grace)
    if rule is None:
        with pytest.raises(VkpError, match="no open alarm"):
            await lookup.get_alarm_context(call("a-1"), PATIENT)
    else:
        assert (await lookup.get_alarm_context(call("a-1"), PATIENT)).basis.rule == rule


@pytest.mark.parametrize(
    ("failure", "reason"),
    [(EpjTimeout("slow"), "EPJ_TIMEOUT"), (EpjUnavailable("down"), "EPJ_UNAVAILABLE")],
)
async def test_an_epj_failure_is_answered_and_recorded_as_failed(
    failure: Exception, reason: str
) -> None:
    audit = FakeAudit()
    with pytest.raises(VkpError) as caught:
        await service(FakeRecords([], fail=failure), audit).get_patient(call(), PATIENT)
    assert caught.value.reason == reason
    (record,) = audit.records
    assert (record.outcome, record.outcome_reason) == (audit_pb2.AUDIT_OUTCOME_FAILED, reason)


async def test_without_its_audit_record_neither_an_answer_nor_a_denial_goes_out() -> None:
    for episodes in ([_episode("27")], []):
        with pytest.raises(VkpError) as caught:
            await service(FakeRecords(episodes), FakeAudit(fail=True)).get_patient(call(), PATIENT)
        assert caught.value.reason == "AUDIT_UNAVAILABLE"


async def test_a_broken_national_id_is_refused_unrecorded_and_unread() -> None:
    audit, records = FakeAudit(), FakeRecords([_episode("27")])
    with pytest.raises(VkpError) as caught:
        await service(records, audit).get_patient(call(), "12345678901")
    assert caught.value.reason == "INVALID_NATIONAL_ID"
    assert (audit.records, records.reads) == ([], [])


async def test_on_cache_hits_an_alarm_context_reads_the_cache_twice_and_fetches_nothing() -> None:
    audit, records = FakeAudit(), FakeRecords([_episode("6")], cache=True)
    lookup = service(records, audit, alarm=AlarmState(open=True))
    answer = await lookup.get_alarm_context(call("a-1"), PATIENT)
    assert answer.basis.rule == Rule.OPEN_ALARM
    assert records.reads == []
    assert records.peeks == [["patient"], ["episodes", "next_of_kin", "visit_plans", "critical"]]
    assert len(audit.records) == 1


async def test_without_cache_hits_each_kind_is_fetched_once_after_the_checks() -> None:
    audit, records = FakeAudit(), FakeRecords([_episode("6")])
    lookup = service(records, audit, alarm=AlarmState(open=True))
    await lookup.get_alarm_context(call("a-1"), PATIENT)
    assert records.reads[:2] == ["patient", "episodes"]
    assert sorted(records.reads[2:]) == ["critical", "next_of_kin", "visit_plans"]


async def test_a_patient_without_the_service_has_the_cache_read_but_nothing_else_fetched() -> None:
    audit, records = FakeAudit(), FakeRecords([_episode("28")])
    lookup = service(records, audit, alarm=AlarmState(open=True))
    with pytest.raises(VkpError, match="no active service"):
        await lookup.get_alarm_context(call("a-1"), PATIENT)
    assert records.reads == ["patient", "episodes"]  # not the kin, plans or critical info


@pytest.mark.parametrize("cache", [False, True])
async def test_a_denial_fetches_nothing_even_with_the_patient_cached(cache: bool) -> None:
    audit, records = FakeAudit(), FakeRecords([_episode("6")], cache=cache)
    with pytest.raises(VkpError) as caught:
        await service(records, audit, alarm=None).get_alarm_context(call("a-1"), PATIENT)
    assert caught.value.reason == "NO_OPEN_ALARM"
    assert records.reads == []
    assert records.peeks in ([], [["patient"]])  # a cache read at most, never a fetch
    assert len(audit.records) == 1
