"""`vkp audit`: the parts of its commands that need no audit service (the commands against a
running service are tested with the service)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from typer.testing import CliRunner

from vkp.audit.v1 import audit_pb2 as pb
from vkp.common.v1 import common_pb2
from vkp_audit.domain.model import Actor, AuditAction, AuditOutcome, AuditRecord, Patient
from vkp_audit.fhir import audit_bundle
from vkp_cli.audit import access_token, audit_app, merge_bundles, record_row, time_range
from vkp_lib.identity.issuer import ORGANIZATION_CLAIM, DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.testing.data import TEST_PEOPLE

MUNICIPALITY = "964120005"
AT = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def record(n: int) -> AuditRecord:
    return AuditRecord(
        record_id=f"00000000-0000-4000-8000-{n:012d}",
        actor=Actor(client_id="alarm-central", organization_number="912340007"),
        municipality=MUNICIPALITY,
        patients=(Patient(TEST_PEOPLE[n % len(TEST_PEOPLE)].national_id),),
        action=AuditAction.READ,
        resource="/vkp.lookup.v1.LookupService/GetAlarmContext",
        outcome=AuditOutcome.ALLOWED,
        occurred_time=AT - timedelta(minutes=n),
    )


def full_urls(bundle: dict[str, Any]) -> list[str]:
    return [entry["fullUrl"] for entry in bundle.get("entry", [])]


def test_pages_merge_into_one_collection_of_their_entries_in_order() -> None:
    pages = [audit_bundle([record(1), record(2)]), audit_bundle([record(3)])]
    merged = merge_bundles(pages)
    assert merged.type == "collection"
    assert [type(e.resource) for e in merged.entry or []] == [AuditEvent] * 3
    as_json = json.loads(merged.model_dump_json())
    assert full_urls(as_json) == [f"urn:uuid:{record(n).record_id}" for n in (1, 2, 3)]
    assert as_json["entry"][0] == json.loads(pages[0])["entry"][0]


def test_a_record_on_two_pages_is_merged_once() -> None:
    merged = merge_bundles([audit_bundle([record(1), record(2)]), audit_bundle([record(2)])])
    assert [e.fullUrl for e in merged.entry or []] == [
        f"urn:uuid:{record(1).record_id}",
        f"urn:uuid:{record(2).record_id}",
    ]


def test_empty_pages_merge_into_an_empty_collection() -> None:
    merged = merge_bundles([audit_bundle([]), audit_bundle([])])
    assert json.loads(merged.model_dump_json()) == {"resourceType": "Bundle", "type": "collection"}


def test_a_page_that_is_not_a_fhir_bundle_is_refused() -> None:
    with pytest.raises(ValueError, match="Bundle"):
        merge_bundles([b'{"resourceType": "Bundle", "type": "collection", "entry": 3}'])


def test_no_times_give_no_time_range() -> None:
    assert time_range() is None


def test_a_time_without_a_zone_is_utc_and_one_with_a_zone_is_converted() -> None:
    period = time_range("2026-11-26T08:00", "2026-11-26T09:30:00+01:00")
    assert period is not None
    assert period.start_time.ToDatetime(tzinfo=UTC) == AT
    assert period.end_time.ToDatetime(tzinfo=UTC) == AT + timedelta(minutes=30)


def test_a_date_is_its_midnight_and_an_open_end_stays_unset() -> None:
    since = time_range(since="2026-11-26")
    assert since is not None
    assert since.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 26, tzinfo=UTC)
    assert not since.HasField("end_time")
    until = time_range(until="2026-11-26T08:00:00Z")
    assert until is not None
    assert not until.HasField("start_time")
    assert until.end_time.ToDatetime(tzinfo=UTC) == AT


def test_a_span_that_ends_before_it_begins_is_refused() -> None:
    with pytest.raises(ValueError, match="before"):
        time_range("2026-11-26T09:00Z", "2026-11-26T08:00Z")


def test_a_time_that_is_not_iso_8601_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        time_range(since="yesterday")


def test_a_bad_time_is_a_usage_error_before_any_call() -> None:
    result = CliRunner().invoke(
        audit_app,
        ["query", "--municipality", MUNICIPALITY, "--since", "yesterday", "--target", "0.0.0.0:1"],
    )
    assert result.exit_code == 2
    assert "--since" in result.output


def test_an_allowed_row_shows_what_allowed_it() -> None:
    message = pb.AuditRecord(
        actor=pb.Actor(client_id="dosetta-dispenser"),
        municipality=MUNICIPALITY,
        action=pb.AUDIT_ACTION_READ,
        resource="/vkp.lookup.v1.LookupService/GetPatient",
        outcome=pb.AUDIT_OUTCOME_ALLOWED,
        access_basis="SERVICE_NEED EpisodeOfCare/eoc-27",
    )
    assert record_row(message)[6] == "allowed: SERVICE_NEED EpisodeOfCare/eoc-27"


def test_a_query_row_counts_the_patients_and_never_shows_their_ids() -> None:
    message = pb.AuditRecord(
        actor=pb.Actor(client_id="alarm-central", organization_number="912340007"),
        municipality=MUNICIPALITY,
        patients=[common_pb2.NationalId(value=p.national_id) for p in TEST_PEOPLE[:3]],
        action=pb.AUDIT_ACTION_QUERY,
        resource="/vkp.lookup.v1.LookupService/ListServiceNeeds",
        purpose=pb.Purpose(service_code=common_pb2.SERVICE_CODE_TA, alarm_id="alarm-1"),
        outcome=pb.AUDIT_OUTCOME_DENIED,
        outcome_reason="NOT_ALLOWED",
        stale_data=True,
        sequence=42,
    )
    message.occurred_time.FromDatetime(AT)
    row = record_row(message)
    assert row == (
        "2026-11-26T08:00:00Z",
        "alarm-central",
        "912340007",
        "query",
        "/vkp.lookup.v1.LookupService/ListServiceNeeds",
        "TA alarm alarm-1",
        "denied: NOT_ALLOWED (stale data)",
        "3",
        "42",
    )
    assert not any(p.national_id in cell for p in TEST_PEOPLE for cell in row)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def test_the_development_token_is_for_the_municipality_with_the_scope_asked(
    dev_issuer: DevelopmentIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VKP_TOKEN", raising=False)
    token = claims(access_token("", dev_issuer.directory, MUNICIPALITY, Scopes.AUDIT_READ))
    assert token[ORGANIZATION_CLAIM] == MUNICIPALITY
    assert token["scope"] == Scopes.AUDIT_READ


def test_a_given_token_wins_over_vkp_token_which_wins_over_the_issuer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VKP_TOKEN", "from-env")
    assert access_token("given", tmp_path, MUNICIPALITY, Scopes.ADMIN) == "given"
    assert access_token("", tmp_path, MUNICIPALITY, Scopes.ADMIN) == "from-env"
    assert not any(tmp_path.iterdir())
