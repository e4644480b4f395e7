"""The hash chain of a municipality's records, and its verification.

Each record's canonical form — its content, its place in the chain (`sequence`) and the hash of
the record before it — is JSON with sorted keys and no spaces; its hash is the SHA-256 of that.
A field added later (`access_basis`) is in it only when set, so the records before it keep their
canonical form and their hashes.
Changing a record changes its hash; removing or moving one breaks the link of the next; writing
the chain anew from some record on, consistently, changes the head, which no longer matches the
head a checkpoint signed with a key the database does not hold.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from vkp_audit.domain.model import (
    Actor,
    AuditAction,
    AuditOutcome,
    AuditRecord,
    Checkpoint,
    Patient,
)
from vkp_lib.national_id import NationalIdKind

#: The "previous hash" of a chain's first record.
GENESIS = "0" * 64


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else ""


def _content(record: AuditRecord) -> dict[str, Any]:
    content: dict[str, Any] = {
        "record_id": record.record_id,
        "municipality": record.municipality,
        "sequence": record.sequence,
        "previous_hash": record.previous_hash,
        "record_time": _time(record.record_time),
        "actor": {
            "client_id": record.actor.client_id,
            "organization_number": record.actor.organization_number,
            "vendor_system": record.actor.vendor_system,
            "person_id": record.actor.person_id,
        },
        "patients": [[p.national_id, p.type.value if p.type else ""] for p in record.patients],
        "action": record.action.value,
        "resource": record.resource,
        "service_code": record.service_code,
        "alarm_id": record.alarm_id,
        "outcome": record.outcome.value,
        "outcome_reason": record.outcome_reason,
        "stale_data": record.stale_data,
        "occurred_time": _time(record.occurred_time),
        "request_id": record.request_id,
        "trace_id": record.trace_id,
    }
    if record.access_basis:
        content["access_basis"] = record.access_basis
    return content


def canonical(record: AuditRecord) -> str:
    """The canonical form: what the hash covers and what is stored."""
    return _dumps(_content(record))


def _dumps(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_of(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def from_canonical(body: str, stored_hash: str) -> AuditRecord:
    """The record a stored canonical form describes (with the hash stored beside it)."""
    data = json.loads(body)
    actor = data["actor"]
    return AuditRecord(
        record_id=data["record_id"],
        actor=Actor(
            actor["client_id"],
            actor["organization_number"],
            actor["vendor_system"],
            actor["person_id"],
        ),
        municipality=data["municipality"],
        patients=tuple(
            Patient(p[0], NationalIdKind(p[1]) if p[1] else None) for p in data["patients"]
        ),
        action=AuditAction(data["action"]),
        resource=data["resource"],
        outcome=AuditOutcome(data["outcome"]),
        occurred_time=datetime.fromisoformat(data["occurred_time"]),
        service_code=data["service_code"],
        alarm_id=data["alarm_id"],
        outcome_reason=data["outcome_reason"],
        stale_data=data["stale_data"],
        request_id=data["request_id"],
        trace_id=data["trace_id"],
        access_basis=data.get("access_basis", ""),
        sequence=data["sequence"],
        previous_hash=data["previous_hash"],
        hash=stored_hash,
        record_time=datetime.fromisoformat(data["record_time"]) if data["record_time"] else None,
    )


def link(record: AuditRecord, sequence: int, previous_hash: str, now: datetime) -> AuditRecord:
    """The record as the chain's next, with its hash."""
    _, hashed = chained(record, sequence, previous_hash, now)
    return replace(
        record, sequence=sequence, previous_hash=previous_hash, record_time=now, hash=hashed
    )


def chained(
    record: AuditRecord, sequence: int, previous_hash: str, now: datetime
) -> tuple[str, str]:
    """The canonical form and the hash of the record as the chain's next (the record `link`
    makes), made once each: what the store writes."""
    content = _content(record)
    content.update(sequence=sequence, previous_hash=previous_hash, record_time=_time(now))
    body = _dumps(content)
    return body, hash_of(body)


def checkpoint_message(municipality: str, sequence: int, head_hash: str, when: datetime) -> bytes:
    """What a checkpoint's signature covers."""
    return f"vkp-audit-checkpoint\n{municipality}\n{sequence}\n{head_hash}\n{_time(when)}".encode()


class ChainProblem(enum.StrEnum):
    HASH_MISMATCH = "HASH_MISMATCH"  # the record is not what was hashed: edited
    BROKEN_LINK = "BROKEN_LINK"  # it does not follow the record before it: moved or inserted
    GAP = "GAP"  # a sequence number is missing: removed
    BAD_SIGNATURE = "BAD_SIGNATURE"  # a checkpoint's signature is not the key's
    CHECKPOINT_MISMATCH = "CHECKPOINT_MISMATCH"  # the chain is not what a checkpoint signed
    INDEX_MISMATCH = "INDEX_MISMATCH"  # what finds the record no longer matches it


@dataclass(frozen=True)
class Index:
    """What finds a record in queries, as stored beside it."""

    occurred_time: datetime
    client_id: str
    patients: frozenset[str]

    @classmethod
    def of(cls, record: AuditRecord) -> Index:
        return cls(
            record.occurred_time,
            record.actor.client_id,
            frozenset(p.national_id for p in record.patients),
        )


@dataclass(frozen=True)
class StoredRecord:
    """A record as read from storage: its row's sequence, its canonical form and stored hash,
    and its index (None: not checked)."""

    sequence: int
    body: str
    hash: str
    index: Index | None = None


@dataclass(frozen=True)
class Verification:
    intact: bool
    records_checked: int
    first_bad_sequence: int = 0
    problem: ChainProblem | None = None
    latest_checkpoint: Checkpoint | None = None


def verify(
    rows: Iterable[StoredRecord],
    checkpoints: Sequence[Checkpoint],
    signature_valid: Callable[[Checkpoint], bool],
    *,
    from_sequence: int = 1,
    previous_hash: str = GENESIS,
) -> Verification:
    """Checks `rows` (in sequence order, from `from_sequence`, after a record whose hash is
    `previous_hash`) and the `checkpoints` within them; reports the first record that does not
    fit."""
    problems: list[tuple[int, ChainProblem]] = []
    hashes: dict[int, str] = {}
    expected, previous, checked = from_sequence, previous_hash, 0
    for row in rows:
        checked += 1
        if row.sequence != expected:
            problems.append((expected, ChainProblem.GAP))
            break
        if hash_of(row.body) != row.hash:
            problems.append((row.sequence, ChainProblem.HASH_MISMATCH))
            break
        record = from_canonical(row.body, row.hash)
        if record.sequence != row.sequence or record.previous_hash != previous:
            problems.append((row.sequence, ChainProblem.BROKEN_LINK))
            break
        if row.index is not None and row.index != Index.of(record):
            problems.append((row.sequence, ChainProblem.INDEX_MISMATCH))
            break
        hashes[row.sequence] = row.hash
        previous, expected = row.hash, expected + 1
    last = expected - 1
    for checkpoint in sorted(checkpoints, key=lambda c: c.sequence):
        if not signature_valid(checkpoint):
            problems.append((checkpoint.sequence, ChainProblem.BAD_SIGNATURE))
        elif (
            checkpoint.sequence >= from_sequence
            and (not problems or checkpoint.sequence <= last)
            and hashes.get(checkpoint.sequence) != checkpoint.head_hash
        ):
            problems.append((checkpoint.sequence, ChainProblem.CHECKPOINT_MISMATCH))
    latest = max(checkpoints, key=lambda c: c.sequence, default=None)
    if not problems:
        return Verification(True, checked, latest_checkpoint=latest)
    sequence, problem = min(problems, key=lambda p: p[0])
    return Verification(False, checked, sequence, problem, latest)
