"""The audit service's own ErrorInfo reasons (domain audit.vkp). The contract lists them, with
the shared reasons the hub's libraries raise for it (field rules, page tokens, authentication),
in the comment above AuditService in protos/vkp/audit/v1/audit.proto."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    #: PERMISSION_DENIED: an audit reader asked about another municipality's log.
    WRONG_MUNICIPALITY = "WRONG_MUNICIPALITY"
    #: FAILED_PRECONDITION: a checkpoint of a chain that has no records yet.
    CHAIN_EMPTY = "CHAIN_EMPTY"
    #: UNAVAILABLE: records sent while the service is stopping (safe to retry elsewhere).
    AUDIT_STOPPING = "AUDIT_STOPPING"
