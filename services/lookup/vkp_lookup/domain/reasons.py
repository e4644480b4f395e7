"""The ErrorInfo reasons the lookup service raises itself (shared ones come from vkp_lib). Its
RPCs come in step 12: these are the reasons its contract promises for them."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    #: VKP 1.3: the patient has no active service of a type the vendor's service code maps to.
    MISSING_ACTIVE_SERVICE = "MISSING_ACTIVE_SERVICE"
    #: GetAlarmContext outside the alarm window.
    NO_OPEN_ALARM = "NO_OPEN_ALARM"
    #: No patient with this national id in the municipality's EPJ.
    PATIENT_NOT_FOUND = "PATIENT_NOT_FOUND"
    #: The EPJ did not answer in time (DEADLINE_EXCEEDED).
    EPJ_TIMEOUT = "EPJ_TIMEOUT"
    #: The EPJ cannot be reached and no cached data within the stale bound is left.
    EPJ_UNAVAILABLE = "EPJ_UNAVAILABLE"
    #: The audit record could not be written: no record, no answer.
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
