"""The audit record of a delivered note: recorded once in the audit log (an outbox), its id
derived from the entry, so a record sent again is stored once."""

from __future__ import annotations

import uuid

#: The uuid5 namespace of the records' ids (never change it: the audit log knows them by it).
AUDIT_NAMESPACE = uuid.UUID("0b0d3c3e-2f7a-4b8e-9c55-6f1f4f1c2a77")


def audit_record_id(entry_id: str) -> str:
    return str(uuid.uuid5(AUDIT_NAMESPACE, entry_id))
