"""Who may call each RPC of audit: the hub's services write, audit readers read."""

from __future__ import annotations

from vkp_lib.identity.permissions import HUB_SERVICE, Permissions, Scope, Scopes

AUDIT_READ = Scope(Scopes.AUDIT_READ)

PERMISSIONS = Permissions(
    "vkp.audit.v1.AuditService",
    {
        # Every service that touches patient data records it.
        "Record": HUB_SERVICE,
        "Query": AUDIT_READ,
        "VerifyChain": AUDIT_READ,
        "ExportFhir": AUDIT_READ,
        "CreateCheckpoint": Scope(Scopes.ADMIN),
    },
)
