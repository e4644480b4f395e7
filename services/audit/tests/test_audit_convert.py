"""Between the audit contract and the domain: the national-id types through vkp_lib.national_id,
the access basis, and a request's open time range."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from vkp.audit.v1 import audit_pb2 as pb
from vkp.common.v1 import common_pb2
from vkp_audit import convert
from vkp_lib.national_id import NationalIdKind
from vkp_lib.testing.data import TEST_PEOPLE

KARI = TEST_PEOPLE[0].national_id


def _record(*patients: common_pb2.NationalId) -> pb.AuditRecord:
    return pb.AuditRecord(
        record_id="6F1C2A9E-4B7D-4C1E-9A3F-0D2E5B8C7A11",
        actor=pb.Actor(client_id="alarm-central"),
        municipality="964120005",
        patients=list(patients),
        action=pb.AUDIT_ACTION_READ,
        resource="/vkp.lookup.v1.LookupService/GetAlarmContext",
        outcome=pb.AUDIT_OUTCOME_ALLOWED,
        occurred_time=Timestamp(seconds=1_795_680_000),
    )


@pytest.mark.parametrize(
    ("stated", "kind"),
    [
        (common_pb2.NATIONAL_ID_TYPE_UNSPECIFIED, None),
        (common_pb2.NATIONAL_ID_TYPE_FNR, NationalIdKind.FNR),
        (common_pb2.NATIONAL_ID_TYPE_DNR, NationalIdKind.DNR),
        (common_pb2.NATIONAL_ID_TYPE_FHN, NationalIdKind.FHN),
    ],
)
def test_a_patients_id_type_goes_to_its_kind_and_back(
    stated: common_pb2.NationalIdType.ValueType, kind: NationalIdKind | None
) -> None:
    record = convert.record_from_pb(_record(common_pb2.NationalId(value=KARI, type=stated)))
    assert record.patients[0].type is kind
    assert convert.record_to_pb(record).patients[0].type == stated


def test_a_record_id_is_kept_in_lower_case() -> None:
    record = convert.record_from_pb(_record())
    assert record.record_id == "6f1c2a9e-4b7d-4c1e-9a3f-0d2e5b8c7a11"


def test_an_access_basis_goes_to_the_domain_and_back() -> None:
    written = _record()
    written.access_basis = "OPEN_ALARM EpisodeOfCare/eoc-6"
    record = convert.record_from_pb(written)
    assert record.access_basis == "OPEN_ALARM EpisodeOfCare/eoc-6"
    assert convert.record_to_pb(record).access_basis == "OPEN_ALARM EpisodeOfCare/eoc-6"


def test_a_query_without_a_time_range_is_open_on_both_sides() -> None:
    wanted = convert.query_from_pb(pb.QueryRequest(municipality="964120005"))
    assert (wanted.since, wanted.until, wanted.national_id) == (None, None, "")


def test_a_query_open_at_one_end_has_only_the_other() -> None:
    start = Timestamp()
    start.FromDatetime(datetime(2026, 11, 26, tzinfo=UTC))
    wanted = convert.export_query_from_pb(
        pb.ExportFhirRequest(
            municipality="964120005", time_range=common_pb2.Period(start_time=start)
        )
    )
    assert (wanted.since, wanted.until) == (datetime(2026, 11, 26, tzinfo=UTC), None)
