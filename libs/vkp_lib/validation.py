"""The field rules of the contracts, enforced: protovalidate over a received message.

The rules are declared in the protos (protovalidate annotations, and the predefined rules of
vkp/common/v1/rules.proto); nothing here restates them. A message that breaks them becomes an
`InvalidArgument` whose violations name each field by its path (`events[3].patient.value`), so
the runner answers INVALID_ARGUMENT with a `BadRequest` and an `ErrorInfo` reason.

The reason says what kind of value was wrong when every violation agrees (a national id, an
organisation number, a kommunenummer), and is INVALID_FORMAT otherwise.
"""

from __future__ import annotations

import json

import protovalidate
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from buf.validate import validate_pb2
from vkp_lib.errors import FieldViolation, InvalidArgument

INVALID_FORMAT = "INVALID_FORMAT"
#: ErrorInfo reasons of the predefined rules of vkp/common/v1/rules.proto, by rule id.
REASONS_BY_RULE = {
    "vkp.national_id": "INVALID_NATIONAL_ID",
    "vkp.organization_number": "INVALID_ORGANIZATION_NUMBER",
    "vkp.organization_number.check_digit": "INVALID_ORGANIZATION_NUMBER",
    "vkp.municipality_number": "INVALID_MUNICIPALITY_NUMBER",
}

# One validator for the process: it caches what it compiles from each message type's rules.
_validator = protovalidate.Validator()


def _path(violation: protovalidate.Violation) -> str:
    field = violation.proto.field
    parts: list[str] = []
    for element in field.elements if field is not None else ():
        part = element.field_name
        if element.subscript is not None:
            subscript = element.subscript.value
            part += f"[{json.dumps(subscript) if isinstance(subscript, str) else subscript}]"
        parts.append(part)
    return ".".join(parts)


def field_violations(message: Message) -> list[FieldViolation]:
    """Every rule `message` breaks, as field violations; empty when it is valid."""
    return [
        FieldViolation(
            field=_path(v),
            description=v.proto.message or v.proto.rule_id,
            reason=REASONS_BY_RULE.get(v.proto.rule_id, INVALID_FORMAT),
        )
        for v in _validator.collect_violations(message)
    ]


def reason_of(violations: list[FieldViolation]) -> str:
    """The ErrorInfo reason of a set of violations."""
    reasons = {v.reason for v in violations}
    return reasons.pop() if len(reasons) == 1 else INVALID_FORMAT


def validate(message: Message) -> None:
    """Raises `InvalidArgument` when `message` breaks a rule of its contract."""
    violations = field_violations(message)
    if violations:
        fields = ", ".join(v.field or "(message)" for v in violations)
        raise InvalidArgument(reason_of(violations), f"invalid {fields}", violations=violations)


def has_rules(descriptor: Descriptor) -> bool:
    """Whether messages of this type carry a field rule, in themselves or in a message they hold:
    one that carries none is valid whatever it holds, so the runner need not check it."""
    return _has_rules(descriptor, set())


def _has_rules(descriptor: Descriptor, seen: set[str]) -> bool:
    if descriptor.full_name in seen:  # a recursive type: its rules are looked at once
        return False
    seen.add(descriptor.full_name)
    if descriptor.GetOptions().HasExtension(validate_pb2.message):
        return True
    if any(o.GetOptions().HasExtension(validate_pb2.oneof) for o in descriptor.oneofs):
        return True
    return any(
        field.GetOptions().HasExtension(validate_pb2.field)
        or (field.message_type is not None and _has_rules(field.message_type, seen))
        for field in descriptor.fields
    )
