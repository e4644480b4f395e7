"""The domain rules of an event, after the contract's field rules: the patient's national id
(mod-11; synthetic ids only where the deployment allows them; the stated kind matching the
digits) and the event's time (not in the future beyond a small skew, not older than the window).
The codes belong to their code systems by the contract's own rules (`in` lists per payload)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vkp.common.v1 import common_pb2, event_pb2
from vkp_lib.errors import FieldViolation, InvalidArgument
from vkp_lib.national_id import InvalidNationalId, NationalIdKind, parse_national_id

KIND_OF_TYPE = {
    common_pb2.NATIONAL_ID_TYPE_FNR: NationalIdKind.FNR,
    common_pb2.NATIONAL_ID_TYPE_DNR: NationalIdKind.DNR,
    common_pb2.NATIONAL_ID_TYPE_FHN: NationalIdKind.FHN,
}


def check_event(
    event: event_pb2.Event,
    now: datetime,
    *,
    allow_synthetic: bool,
    future_skew: timedelta,
    max_age: timedelta,
    prefix: str = "",
) -> None:
    """Raises InvalidArgument naming the field (under `prefix`) the event breaks a rule with."""
    try:
        parsed = parse_national_id(event.patient.value, allow_synthetic=allow_synthetic)
    except InvalidNationalId:
        raise _invalid(
            "INVALID_NATIONAL_ID",
            f"{prefix}patient.value",
            "not a valid national id (check digits, date, or a synthetic id where none is allowed)",
        ) from None
    stated = KIND_OF_TYPE.get(event.patient.type)
    if stated is not None and stated is not parsed.kind:
        raise _invalid(
            "NATIONAL_ID_TYPE_MISMATCH",
            f"{prefix}patient.type",
            "the digits are of another kind of national id",
        )
    occurred = event.occurred_time.ToDatetime(tzinfo=UTC)
    if occurred > now + future_skew:
        raise _invalid("EVENT_IN_FUTURE", f"{prefix}occurred_time", "is in the future")
    if occurred < now - max_age:
        raise _invalid("EVENT_TOO_OLD", f"{prefix}occurred_time", "is older than the window")


def _invalid(reason: str, field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        reason, f"invalid {field}", violations=[FieldViolation(field, description, reason)]
    )
