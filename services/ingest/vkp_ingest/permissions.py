"""Who may call each RPC of ingest: vendor systems, and the hub's own services."""

from __future__ import annotations

from vkp_lib.identity.permissions import HUB_SERVICE, Permissions, Scope, Scopes

INGEST = Scope(Scopes.INGEST)

PERMISSIONS = Permissions(
    "vkp.ingest.v1.IngestService",
    {
        "SubmitEvent": INGEST,
        "SubmitEvents": INGEST,
        "GetEventStatus": INGEST,
        # Lookup asks before it answers GetAlarmContext.
        "CheckOpenAlarm": HUB_SERVICE,
    },
)
