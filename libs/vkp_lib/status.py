"""Domain errors as gRPC statuses with `google.rpc.ErrorInfo`, and back (AIP-193).

The server side builds the rich status from a `VkpError`; clients (the services calling one
another, tests, vendor code) read the reason back with `error_info`.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from vkp_lib.errors import ErrorKind, VkpError


def grpc_code(kind: ErrorKind) -> grpc.StatusCode:
    """The status code of an error kind: the one mapping, used by the server and by batch
    answers that carry an error per item."""
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
    return status_pb2.Status(code=code.value[0], message=message, details=details)


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


def to_grpc(status: status_pb2.Status) -> grpc.Status:
    """The status to end a call with: code, message and the details trailer (grpcio-status)."""
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def status_from_error(error: grpc.RpcError) -> status_pb2.Status | None:
    """The rich status a server attached to a failed call, if any (and if it agrees with the
    call's own code and message)."""
    try:
        found: status_pb2.Status | None = rpc_status.from_call(error)
    except (ValueError, AttributeError):
        return None
    return found


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
