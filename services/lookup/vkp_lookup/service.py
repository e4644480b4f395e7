"""The lookup service's use cases. Each answer (and each denial) is recorded in the audit log
before it goes out; the RPCs come in step 12 and answer UNIMPLEMENTED until then. What is here
already is the rule that opens responder data: the alarm window, with the deployment's grace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from vkp_lookup.domain.need import AlarmState, alarm_window_open
from vkp_lookup.settings import LookupSettings


class LookupService:
    def __init__(
        self,
        settings: LookupSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._grace = timedelta(seconds=settings.alarm_grace_seconds)
        self._clock = clock

    def alarm_window_open(self, alarm: AlarmState | None) -> bool:
        """Whether responder data may be given for this alarm now."""
        return alarm_window_open(alarm, self._clock(), self._grace)
