"""The ErrorInfo reasons the lookup service raises itself (shared ones come from vkp_lib: the
registry's denials, REGISTRY_UNAVAILABLE, REGISTRY_BEHIND, INVALID_PAGE_TOKEN)."""

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
    #: Ingest cannot say now whether the alarm is open (GetAlarmContext).
    INGEST_UNAVAILABLE = "INGEST_UNAVAILABLE"
    #: The patient's national id fails its mod-11 check (or is synthetic where they are not
    #: allowed).
    INVALID_NATIONAL_ID = "INVALID_NATIONAL_ID"
    #: A field that passes its pattern but means nothing (a date that is no day).
    INVALID_FORMAT = "INVALID_FORMAT"
