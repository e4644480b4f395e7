"""vkp_lib.timestamps: the same Timestamp as protobuf's own conversion, in less time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from vkp_lib.timestamps import timestamp


@pytest.mark.parametrize(
    "value",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 11, 26, 12, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=-7))),
        datetime(2026, 11, 26, 12, 0, 0, 654_321),  # naive: taken as UTC, as protobuf does
    ],
)
def test_a_time_converts_as_protobufs_from_datetime_does(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


def test_no_time_is_no_timestamp() -> None:
    assert timestamp(None) is None
