"""Proto <-> domain types of the lookup service."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.duration_pb2 import Duration

from vkp.lookup.v1 import lookup_pb2 as pb
from vkp_lib.timestamps import timestamp
from vkp_lookup.domain.model import Freshness


def freshness_to_pb(freshness: Freshness, now: datetime) -> pb.Freshness:
    age = Duration()
    age.FromTimedelta(freshness.age(now))
    return pb.Freshness(
        stale=freshness.stale, cache_age=age, fetch_time=timestamp(freshness.fetch_time)
    )
