"""Who may call each RPC of journaling: ingest, operators, and EPJs that pull."""

from __future__ import annotations

from vkp_lib.identity.permissions import HUB_SERVICE, AnyOf, Permissions, Scope, Scopes

ADMIN = Scope(Scopes.ADMIN)
EPJ = Scope(Scopes.EPJ)

PERMISSIONS = Permissions(
    "vkp.journaling.v1.JournalingService",
    {
        # Ingest's outbox relay.
        "Enqueue": HUB_SERVICE,
        # Ingest reads the part of an event's status after QUEUED.
        "GetEntry": AnyOf((ADMIN, HUB_SERVICE)),
        "ListEntries": ADMIN,
        "ListDeadLetters": ADMIN,
        "RetryEntry": ADMIN,
        "ListPending": EPJ,
        "Acknowledge": EPJ,
    },
)
