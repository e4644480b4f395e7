"""Who may call each RPC of lookup: vendor systems with the lookup scope."""

from __future__ import annotations

from vkp_lib.identity.permissions import Permissions, Scope, Scopes

LOOKUP = Scope(Scopes.LOOKUP)

PERMISSIONS = Permissions(
    "vkp.lookup.v1.LookupService",
    {
        "ListServiceRecipients": LOOKUP,
        "GetPatient": LOOKUP,
        "GetServices": LOOKUP,
        "GetVisitPlan": LOOKUP,
        "GetAlarmContext": LOOKUP,
    },
)
