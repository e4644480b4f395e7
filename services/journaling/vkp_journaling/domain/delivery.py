"""One delivery attempt and what follows it.

An attempt is JOURNALED (the EPJ confirmed every resource of the note), TRANSIENT (worth another
try: the EPJ is down, slow or answering 5xx) or PERMANENT (the EPJ refused the note for good, or
the note cannot be made). After a failure the entry is retried after a backoff, or given up on —
DEAD — when the failure is permanent, when it has had its attempts, or when it is older than the
deployment allows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


class Result(enum.Enum):
    JOURNALED = "journaled"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


class Failure(enum.StrEnum):
    """Why an attempt failed: the entry's `last_error_reason` (and the dead letter's reason);
    with an EPJ's HTTP status, `epj_error` and `epj_rejected`."""

    #: The municipality has no EPJ endpoint (or is suspended): transient, it may get one.
    NO_EPJ_ENDPOINT = "NO_EPJ_ENDPOINT"
    #: The event makes no note: permanent.
    RENDER_FAILED = "RENDER_FAILED"
    EPJ_TIMEOUT = "EPJ_TIMEOUT"
    EPJ_UNAVAILABLE = "EPJ_UNAVAILABLE"
    #: An answer that is not JSON: transient.
    EPJ_BAD_RESPONSE = "EPJ_BAD_RESPONSE"
    #: 412: a conditional create matched more than one resource: permanent.
    EPJ_PRECONDITION_FAILED = "EPJ_PRECONDITION_FAILED"
    #: HTTP 200 without every entry created or found: permanent.
    EPJ_NOT_STORED = "EPJ_NOT_STORED"


def epj_error(status: int) -> str:
    """A 5xx, with its status (transient): EPJ_ERROR_503."""
    return f"EPJ_ERROR_{status}"


def epj_rejected(status: int) -> str:
    """Another 4xx (or 3xx), with its status (permanent): EPJ_REJECTED_400."""
    return f"EPJ_REJECTED_{status}"


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: str = ""


JOURNALED = Outcome(Result.JOURNALED)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failing note is given up on."""

    max_attempts: int
    max_age: timedelta


@dataclass(frozen=True)
class Retry:
    """Try again at `at`; the entry has had `attempts` attempts."""

    attempts: int
    at: datetime


@dataclass(frozen=True)
class Dead:
    """Give up: the entry becomes a dead letter after `attempts` attempts."""

    attempts: int


def after_failure(
    policy: RetryPolicy,
    *,
    attempts: int,
    create_time: datetime,
    now: datetime,
    permanent: bool,
    backoff: Callable[[int], float],
) -> Retry | Dead:
    """What follows a failed attempt of an entry that had `attempts` attempts before it and was
    created at `create_time`. `backoff(n)` is the delay in seconds after the n-th failure in a
    row (exponential with jitter: vkp_lib.tasks.Backoff)."""
    attempts += 1
    too_old = now - create_time > policy.max_age
    if permanent or attempts >= policy.max_attempts or too_old:
        return Dead(attempts)
    return Retry(attempts, now + timedelta(seconds=backoff(attempts)))
