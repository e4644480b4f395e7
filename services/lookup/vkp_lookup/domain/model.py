"""What lookup answers with besides the EPJ's data: how fresh it is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Freshness:
    """Every answer says how old its data is, and whether it was served stale (EPJ down)."""

    fetch_time: datetime
    stale: bool = False

    def age(self, now: datetime) -> timedelta:
        return max(timedelta(0), now - self.fetch_time)
