"""What a denied access decision of the registry means, in words a vendor can act on.

The registry answers `CheckAccess` with a stable reason (VKP's codes); the services that ask it
(ingest for `journal`, lookup for `lookup`) refuse the call PERMISSION_DENIED with that reason and
the sentence `explain` gives for it, and `vkp registry explain` prints the same sentence. The
sentences name the municipality, the vendor system and the service code at most: never a
patient or anything of the event.
"""

from __future__ import annotations

from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2 as pb
from vkp_lib.errors import PermissionDenied

_ACTIVITY = {pb.ACCESS_ACTION_JOURNAL: "journal", pb.ACCESS_ACTION_LOOKUP: "look up"}


def reason(decision: pb.AccessDecision) -> str:
    """The ErrorInfo reason of a denial: the registry's reason without its enum prefix."""
    return pb.DenialReason.Name(decision.denial_reason).removeprefix("DENIAL_REASON_")


def explain(
    decision: pb.AccessDecision,
    service_code: common_pb2.ServiceCode.ValueType,
    action: pb.AccessAction.ValueType,
) -> str:
    """One sentence saying why `decision` denies this action for this service."""
    code = common_pb2.ServiceCode.Name(service_code).removeprefix("SERVICE_CODE_")
    match decision.denial_reason:
        case pb.DENIAL_REASON_UNKNOWN_ORGANIZATION if not decision.vendor_system:
            return "this client id belongs to no vendor system registered with the hub"
        case pb.DENIAL_REASON_UNKNOWN_ORGANIZATION:
            return "the municipality is not registered with the hub"
        case pb.DENIAL_REASON_NOT_ACTIVE if not decision.agreement:
            return "the municipality is suspended in the hub"
        case pb.DENIAL_REASON_NOT_ACTIVE:
            return (
                "the municipality's agreement with this vendor system is not active "
                "(revoked, suspended, or outside its validity)"
            )
        case pb.DENIAL_REASON_NO_ACCESS:
            return "the municipality has no agreement with this vendor system"
        case pb.DENIAL_REASON_NOT_ALLOWED:
            return (
                "the municipality's agreement with this vendor system does not allow it to "
                f"{_ACTIVITY.get(action, 'act')} service {code}"
            )
    return "the registry denied this access"


def denied(
    decision: pb.AccessDecision,
    service_code: common_pb2.ServiceCode.ValueType,
    action: pb.AccessAction.ValueType,
) -> PermissionDenied:
    """The error a service raises for a denied decision."""
    return PermissionDenied(reason(decision), explain(decision, service_code, action))
