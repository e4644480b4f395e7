"""The journaling domain alone: what follows a failed delivery attempt, RetryEntry's rule, the
audit record's id and the reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vkp_journaling.domain.audit import audit_record_id
from vkp_journaling.domain.delivery import (
    Dead,
    Retry,
    RetryPolicy,
    after_failure,
    epj_error,
    epj_rejected,
)
from vkp_journaling.domain.entry import WAITING, EntryState, check_retryable
from vkp_journaling.domain.reasons import Reason
from vkp_lib.errors import ErrorKind, FailedPrecondition

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, max_age=timedelta(hours=1))


def doubling(failures: int) -> float:
    """A backoff without jitter: 1, 2, 4, ... seconds."""
    return float(2 ** (failures - 1))


def fail(attempts: int, *, age: timedelta = timedelta(0), permanent: bool = False) -> Retry | Dead:
    return after_failure(
        POLICY,
        attempts=attempts,
        create_time=NOW - age,
        now=NOW,
        permanent=permanent,
        backoff=doubling,
    )


def test_a_transient_failure_is_retried_after_the_backoff_of_its_attempt() -> None:
    assert fail(0) == Retry(attempts=1, at=NOW + timedelta(seconds=1))
    assert fail(3) == Retry(attempts=4, at=NOW + timedelta(seconds=8))


def test_the_attempt_that_reaches_max_attempts_makes_the_entry_dead() -> None:
    assert fail(POLICY.max_attempts - 1) == Dead(attempts=POLICY.max_attempts)


def test_a_permanent_failure_is_dead_at_once() -> None:
    assert fail(0, permanent=True) == Dead(attempts=1)


def test_an_entry_older_than_max_age_is_dead_on_its_next_failure() -> None:
    assert fail(1, age=POLICY.max_age + timedelta(seconds=1)) == Dead(attempts=2)
    assert isinstance(fail(1, age=POLICY.max_age), Retry)  # at the limit: still retried


def test_only_a_dead_letter_may_be_retried() -> None:
    check_retryable(EntryState.DEAD)
    for state in EntryState:
        if state is EntryState.DEAD:
            continue
        with pytest.raises(FailedPrecondition) as refused:
            check_retryable(state)
        assert refused.value.reason == Reason.ENTRY_NOT_DEAD
        assert refused.value.kind is ErrorKind.FAILED_PRECONDITION


def test_entries_wait_only_while_queued_or_retrying() -> None:
    assert set(WAITING) == {EntryState.QUEUED, EntryState.RETRYING}


def test_the_states_are_stored_by_their_contract_names() -> None:
    # The strings migration 0001's rows hold: changing one needs a data migration.
    assert {state.value for state in EntryState} == {
        "REGISTERED",
        "QUEUED",
        "READ",
        "JOURNALED",
        "RETRYING",
        "DEAD",
        "REJECTED",
    }


def test_the_audit_record_id_is_derived_from_the_entry_id_alone() -> None:
    entry_id = "5b0f1c2e-7d3a-4e8b-9f60-2a1c3d4e5f67"
    assert audit_record_id(entry_id) == audit_record_id(entry_id)
    assert audit_record_id(entry_id) != audit_record_id(entry_id + "0")
    # The namespace is fixed: records sent before an upgrade keep their ids after it.
    assert audit_record_id(entry_id) == "d5259810-5204-5b54-ad25-eefb5aac8695"


def test_an_epj_status_is_part_of_the_failure_reason() -> None:
    assert (epj_error(503), epj_rejected(400)) == ("EPJ_ERROR_503", "EPJ_REJECTED_400")


def test_each_reason_is_its_own_name() -> None:
    assert all(reason.value == reason.name for reason in Reason)
