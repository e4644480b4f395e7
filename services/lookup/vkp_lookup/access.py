"""Who may call each RPC of lookup: vendor systems with the lookup scope."""

from __future__ import annotations

from vkp_lib.identity.access import AccessMap, Scope, Scopes

LOOKUP = Scope(Scopes.LOOKUP)

ACCESS = AccessMap(
    "vkp.lookup.v1.LookupService",
    {
        "ListServiceRecipients": LOOKUP,
        "GetPatient": LOOKUP,
        "GetServices": LOOKUP,
        "GetVisitPlan": LOOKUP,
        "GetAlarmContext": LOOKUP,
    },
)
