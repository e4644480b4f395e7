"""The rules of a patient's access log: who may read a municipality's log, and what a patient's
own log shows of a record that named others too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from vkp_audit.domain.model import AuditRecord


def may_read(reader_organization_number: str, municipality: str) -> bool:
    """Audit readers read their own municipality's log only."""
    return reader_organization_number == municipality


def as_seen_by_patient(records: Sequence[AuditRecord], national_id: str) -> list[AuditRecord]:
    """The records as they go into that patient's access log: each names that patient only, not
    the others it named (a list, a batch)."""
    return [
        replace(r, patients=tuple(p for p in r.patients if p.national_id == national_id))
        for r in records
    ]
