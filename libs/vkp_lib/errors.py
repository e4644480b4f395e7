"""Domain errors: what went wrong, in terms a caller can act on.

Pure: no gRPC here. Domain code raises these; the server runner maps each to its canonical
status code with a `google.rpc.ErrorInfo` (AIP-193) whose `reason` is the stable UPPER_SNAKE
string given here, and, for validation, a `google.rpc.BadRequest` with the field violations.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    """The canonical codes a domain error can carry (named as in google.rpc.Code)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path (`events[3].patient.id`) and what is wrong with it."""

    field: str
    description: str
    reason: str = ""


class VkpError(Exception):
    """An error a caller should see: a kind, a stable reason and a message without health data."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.violations = tuple(violations)


class InvalidArgument(VkpError):
    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(VkpError):
    kind = ErrorKind.NOT_FOUND


class AlreadyExists(VkpError):
    kind = ErrorKind.ALREADY_EXISTS


class PermissionDenied(VkpError):
    kind = ErrorKind.PERMISSION_DENIED


class Unauthenticated(VkpError):
    kind = ErrorKind.UNAUTHENTICATED


class FailedPrecondition(VkpError):
    kind = ErrorKind.FAILED_PRECONDITION


class Aborted(VkpError):
    kind = ErrorKind.ABORTED


class ResourceExhausted(VkpError):
    kind = ErrorKind.RESOURCE_EXHAUSTED


class Unavailable(VkpError):
    kind = ErrorKind.UNAVAILABLE


class DeadlineExceeded(VkpError):
    kind = ErrorKind.DEADLINE_EXCEEDED


class StartupError(Exception):
    """A service cannot start: a dependency or a setting is wrong. Its message names what, for
    the operator, and holds no health data."""
