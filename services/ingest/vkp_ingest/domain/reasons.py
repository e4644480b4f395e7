"""The ingest service's own ErrorInfo reasons (domain ingest.vkp). The contract lists them, with
the shared reasons the hub's libraries raise for it (field rules, authentication, the registry's
decisions and denials), in the comment above IngestService in protos/vkp/ingest/v1/ingest.proto."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    #: INVALID_ARGUMENT: the patient's national id fails its check digits or date, or is synthetic
    #: where the deployment allows none (the contract's field rule checks only its shape).
    INVALID_NATIONAL_ID = "INVALID_NATIONAL_ID"
    #: INVALID_ARGUMENT: the stated kind of national id is not the kind its digits are.
    NATIONAL_ID_TYPE_MISMATCH = "NATIONAL_ID_TYPE_MISMATCH"
    #: INVALID_ARGUMENT: the event occurred further in the future than the allowed skew.
    EVENT_IN_FUTURE = "EVENT_IN_FUTURE"
    #: INVALID_ARGUMENT: the event is older than the window ingest accepts.
    EVENT_TOO_OLD = "EVENT_TOO_OLD"
    #: ALREADY_EXISTS: the vendor system used this event id before for other content.
    EVENT_ID_REUSED = "EVENT_ID_REUSED"
    #: NOT_FOUND: no event with this id from the caller's vendor system.
    EVENT_NOT_FOUND = "EVENT_NOT_FOUND"
    #: UNAVAILABLE: events sent while this replica is stopping (safe to retry).
    INGEST_STOPPING = "INGEST_STOPPING"
