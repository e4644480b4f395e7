"""The ErrorInfo reasons the lookup service raises itself (shared ones come from vkp_lib)."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    #: VKP 1.3: the patient has no active service of a type the vendor's service code maps to.
    MISSING_ACTIVE_SERVICE = "MISSING_ACTIVE_SERVICE"
    #: GetAlarmContext outside the alarm window.
    NO_OPEN_ALARM = "NO_OPEN_ALARM"
