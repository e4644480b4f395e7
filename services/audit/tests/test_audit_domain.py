"""The audit domain alone: the canonical form the hashes cover (pinned, since stored chains
depend on it), the rules of a patient's access log, and the reasons."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from vkp_audit.domain.access_log import as_seen_by_patient, may_read
from vkp_audit.domain.chain import GENESIS, canonical, from_canonical, link
from vkp_audit.domain.model import Actor, AuditAction, AuditOutcome, AuditRecord, Patient
from vkp_audit.domain.reasons import Reason
from vkp_lib.national_id import NationalIdKind

#: Synthetic ids (month + 80): a fødselsnummer and a D-number.
FNR, DNR = "02883931575", "42883931569"
RECORD = AuditRecord(
    record_id="00000000-0000-4000-8000-000000000001",
    actor=Actor("dosetta-dispenser", "912340007"),
    municipality="964120005",
    patients=(Patient(FNR, NationalIdKind.FNR), Patient(DNR)),
    action=AuditAction.QUERY,
    resource="/vkp.lookup.v1.LookupService/ListServiceRecipients",
    outcome=AuditOutcome.ALLOWED,
    occurred_time=datetime(2026, 11, 26, 8, 0, tzinfo=UTC),
    service_code="MD",
)
#: The hash of RECORD as the first of its chain, as the service has always computed it: a
#: change here would make every stored chain fail to verify.
PINNED_HASH = "c2592a50de09be202c454a3cb1add7736d38d5ddc8eb1447ad844bbc8f687b6c"


def test_the_canonical_form_of_a_record_hashes_as_it_always_has() -> None:
    linked = link(RECORD, 1, GENESIS, datetime(2026, 11, 26, 8, 0, 1, tzinfo=UTC))
    assert linked.hash == PINNED_HASH


def test_an_access_basis_is_hashed_and_kept_only_when_set() -> None:
    when = datetime(2026, 11, 26, 8, 0, 1, tzinfo=UTC)
    assert '"access_basis"' not in canonical(link(RECORD, 1, GENESIS, when))
    allowed = link(
        replace(RECORD, access_basis="SERVICE_NEED EpisodeOfCare/eoc-27"), 1, GENESIS, when
    )
    assert '"access_basis":"SERVICE_NEED EpisodeOfCare/eoc-27"' in canonical(allowed)
    assert allowed.hash != PINNED_HASH
    assert from_canonical(canonical(allowed), allowed.hash) == allowed


def test_a_stated_id_kind_is_kept_in_the_canonical_form_and_an_unstated_one_stays_none() -> None:
    linked = link(RECORD, 1, GENESIS, datetime(2026, 11, 26, 8, 0, 1, tzinfo=UTC))
    assert '"patients":[["02883931575","FNR"],["42883931569",""]]' in canonical(linked)
    again = from_canonical(canonical(linked), linked.hash)
    assert again.patients == (Patient(FNR, NationalIdKind.FNR), Patient(DNR, None))
    assert again == linked


def test_an_audit_reader_may_read_their_own_municipalitys_log_only() -> None:
    assert may_read("964120005", "964120005")
    assert not may_read("980250008", "964120005")
    assert not may_read("", "964120005")


def test_a_patients_access_log_shows_a_record_naming_that_patient_only() -> None:
    (seen,) = as_seen_by_patient([RECORD], DNR)
    assert seen.patients == (Patient(DNR),)
    assert replace(seen, patients=RECORD.patients) == RECORD


def test_each_reason_is_its_own_name() -> None:
    assert all(reason.value == reason.name for reason in Reason)
