"""Domain errors as gRPC statuses with `google.rpc.ErrorInfo`, and back (AIP-193).

The server side builds the rich status from a `VkpError`; clients (the services calling one
another, tests, vendor code) read the reason back with `error_info`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from vkp_lib.errors import ErrorKind, VkpError

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def grpc_code(kind: ErrorKind) -> grpc.StatusCode:
    return grpc.StatusCode[kind.value]


def rich_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    domain: str,
    metadata: dict[str, str] | None = None,
    violations: list[error_details_pb2.BadRequest.FieldViolation] | None = None,
) -> status_pb2.Status:
    """A google.rpc.Status carrying an ErrorInfo, and a BadRequest when fields are wrong."""
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {}))
    details.append(info)
    if violations:
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=violations))
        details.append(bad)
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)


def status_of(error: VkpError, domain: str) -> status_pb2.Status:
    return rich_status(
        grpc_code(error.kind),
        error.message,
        reason=error.reason,
        domain=domain,
        metadata=error.metadata,
        violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.field, description=v.description, reason=v.reason
            )
            for v in error.violations
        ],
    )


def trailing_metadata(status: status_pb2.Status) -> tuple[tuple[str, bytes], ...]:
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def status_from_error(error: grpc.RpcError) -> status_pb2.Status | None:
    """The rich status a server attached to a failed call, if any."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    pairs = cast(Iterable[tuple[str, str | bytes]], trailing or ())
    for key, value in pairs:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of a failed call (reason, domain, metadata), if the server sent one."""
    status = status_from_error(error)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def bad_request(error: grpc.RpcError) -> error_details_pb2.BadRequest | None:
    """The field violations of a failed call, if the server sent them."""
    status = status_from_error(error)
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return bad
    return None
