"""Aware datetimes as protobuf Timestamps, for the services' message conversions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@overload
def timestamp(value: datetime) -> Timestamp: ...
@overload
def timestamp(value: datetime | None) -> Timestamp | None: ...
def timestamp(value: datetime | None) -> Timestamp | None:
    """The Timestamp of `value`, or None (an unset field) where there is no time."""
    if value is None:
        return None
    # As Timestamp.FromDatetime (a naive time taken as UTC), in a third of its time.
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)
