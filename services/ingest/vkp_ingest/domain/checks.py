"""The domain rules of an event, after the contract's field rules: the patient's national id
(mod-11; synthetic ids only where the deployment allows them; the stated kind matching the
digits) and the event's time (not in the future beyond a small skew, not older than the window).
The codes belong to their code systems by the contract's own rules (`in` lists per payload)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vkp_ingest.domain.reasons import Reason
from vkp_lib.errors import FieldViolation, InvalidArgument
from vkp_lib.national_id import InvalidNationalId, NationalIdKind, parse_national_id


@dataclass(frozen=True)
class EventRules:
    """The deployment's settings of the rules."""

    allow_synthetic: bool
    future_skew: timedelta
    max_age: timedelta


@dataclass(frozen=True)
class EventFacts:
    """What the rules look at in an event."""

    national_id: str
    #: The kind the sender states, if any.
    stated_kind: NationalIdKind | None
    occurred_time: datetime


def check_event(facts: EventFacts, now: datetime, rules: EventRules, *, prefix: str = "") -> None:
    """Raises InvalidArgument naming the field (under `prefix`) the event breaks a rule with."""
    try:
        parsed = parse_national_id(facts.national_id, allow_synthetic=rules.allow_synthetic)
    except InvalidNationalId:
        raise _invalid(
            Reason.INVALID_NATIONAL_ID,
            f"{prefix}patient.value",
            "not a valid national id (check digits, date, or a synthetic id where none is allowed)",
        ) from None
    if facts.stated_kind is not None and facts.stated_kind is not parsed.kind:
        raise _invalid(
            Reason.NATIONAL_ID_TYPE_MISMATCH,
            f"{prefix}patient.type",
            "the digits are of another kind of national id",
        )
    if facts.occurred_time > now + rules.future_skew:
        raise _invalid(Reason.EVENT_IN_FUTURE, f"{prefix}occurred_time", "is in the future")
    if facts.occurred_time < now - rules.max_age:
        raise _invalid(Reason.EVENT_TOO_OLD, f"{prefix}occurred_time", "is older than the window")


def _invalid(reason: Reason, field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        reason, f"invalid {field}", violations=[FieldViolation(field, description, reason)]
    )
