"""Who may call each RPC of journaling: ingest, operators, and EPJs that pull."""

from __future__ import annotations

from vkp_lib.identity.access import HUB_SERVICE, AccessMap, Scope, Scopes

ADMIN = Scope(Scopes.ADMIN)
EPJ = Scope(Scopes.EPJ)

ACCESS = AccessMap(
    "vkp.journaling.v1.JournalingService",
    {
        # Ingest's outbox relay.
        "Enqueue": HUB_SERVICE,
        "GetEntry": ADMIN,
        "ListEntries": ADMIN,
        "ListDeadLetters": ADMIN,
        "RetryEntry": ADMIN,
        "ListPending": EPJ,
        "Acknowledge": EPJ,
    },
)
