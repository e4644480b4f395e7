"""The journaling service's tables, as its migrations made them (vkp_journaling.migrations).

A patient queue's `due_time` says when a worker may next claim it, kept up to date in the
transactions that change it: the due time of its head (the next attempt of a retried note, else
when the head was enqueued) while unleased, its lease's expiry while leased, NULL when it has no
note to deliver. Claims go by the index on (municipality, due_time), one municipality at a time
(`journal_municipalities` lists them), so their cost does not grow with the entries waiting. The
head itself is found by a partial index on the waiting notes (`WAITING_NOTE`), so neither does
the cost of finding it grow with a patient's delivered ones.

Alarm steps wait in `journal_alarms` (one row per alarm: its current segment and when it is due
to be cut, indexed by due_time) until their segment is cut into a handling log, an entry like
any other note (domain.alarm).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from vkp_journaling.domain.entry import ALARM_STEP, WAITING, EntryState

MIGRATIONS = "vkp_journaling.migrations"
VERSION_TABLE = "alembic_version_journaling"
#: An unleased queue's lease_until.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

metadata = sa.MetaData()
entries = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("entry_id", sa.String(64), primary_key=True),
    sa.Column("municipality", sa.String(9), nullable=False),
    sa.Column("patient", sa.String(11), nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("service_code", sa.String(8), nullable=False),
    sa.Column("vendor_system", sa.String(300), nullable=False),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("traceparent", sa.String(55), nullable=False),
    sa.Column("occurred_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
    # An EntryState value.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_time", sa.DateTime(timezone=True), nullable=True),
    # Widened by migration 0003 (a refused pull note's reason carries the EPJ's words).
    sa.Column("last_error_reason", sa.String(600), nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("journaled_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("note_identifier", sa.String(100), nullable=False),
    # The audit outbox: a journaled note whose audit record is still owed.
    sa.Column("audit_pending", sa.Boolean, nullable=False),
    # Pull mode (migration 0003): the note's number in its municipality's pull order (NULL: not
    # numbered), and when a READ note is offered again.
    sa.Column("pull_sequence", sa.BigInteger, nullable=True),
    sa.Column("read_until", sa.DateTime(timezone=True), nullable=True),
    # Alarm steps and handling logs (migration 0004): the vendor's alarm id ('' for other
    # kinds), and the segment a step was journaled in (NULL until its segment is cut) or a
    # log journals.
    sa.Column("alarm_id", sa.String(128), nullable=False, server_default=""),
    sa.Column("alarm_segment", sa.Integer, nullable=True),
)
queues = sa.Table(
    "journal_queues",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("patient", sa.String(11), primary_key=True),
    # The per-patient sequence: the last number handed out.
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    # When a worker may next claim the queue (see above); NULL: nothing to deliver.
    sa.Column("due_time", sa.DateTime(timezone=True), nullable=True),
)
#: Each alarm's current segment and when it is due to be cut (domain.alarm; migration 0004): a
#: closing step's arrival plus the settle window, or the segment's first step's arrival plus the
#: open-alarm timeout, whichever is earlier; NULL while the segment has no step. A cut claims
#: the due rows by the index on due_time (FOR UPDATE SKIP LOCKED on PostgreSQL) and does its
#: work in the same transaction, so the row lock is its lease: a crash rolls it back.
alarms = sa.Table(
    "journal_alarms",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("patient", sa.String(11), primary_key=True),
    sa.Column("vendor_system", sa.String(300), primary_key=True),
    sa.Column("alarm_id", sa.String(128), primary_key=True),
    # The segment the next cut journals (1, 2, ...).
    sa.Column("segment", sa.Integer, nullable=False),
    # Whether a closing step has arrived in that segment.
    sa.Column("closed", sa.Boolean, nullable=False),
    sa.Column("due_time", sa.DateTime(timezone=True), nullable=True),
)
#: Every municipality with a queue: the claims' list to go through (one index probe each).
municipalities = sa.Table(
    "journal_municipalities",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    # Pull mode (migration 0003): the last pull sequence handed out, under this row's lock.
    sa.Column("last_pull_sequence", sa.BigInteger, nullable=False, server_default="0"),
)

#: An entry that waits in its queue to be delivered as a note: QUEUED or RETRYING, not an alarm
#: step. Literals, not parameters: the partial index of heads serves only a query with this very
#: condition (SQLite matches its terms; PostgreSQL must prove it when it plans).
WAITING_NOTE_SQL = (
    f"state IN ({', '.join(repr(state.value) for state in WAITING)}) AND kind != '{ALARM_STEP}'"
)
WAITING_NOTE = sa.and_(
    entries.c.state.in_([sa.literal_column(repr(state.value)) for state in WAITING]),
    entries.c.kind != sa.literal_column(repr(ALARM_STEP)),
)
sa.Index(
    "ix_journal_entries_head",
    entries.c.municipality,
    entries.c.patient,
    entries.c.sequence,
    sqlite_where=sa.text(WAITING_NOTE_SQL),
    postgresql_where=sa.text(WAITING_NOTE_SQL),
)
sa.Index(
    "ix_journal_queues_due",
    queues.c.municipality,
    queues.c.due_time,
    sqlite_where=sa.text("due_time IS NOT NULL"),
    postgresql_where=sa.text("due_time IS NOT NULL"),
)

sa.Index(
    "ix_journal_alarms_due",
    alarms.c.due_time,
    sqlite_where=sa.text("due_time IS NOT NULL"),
    postgresql_where=sa.text("due_time IS NOT NULL"),
)
#: An alarm's steps, by segment (NULL: not cut yet). Literal, as for the heads' index.
ALARM_STEP_SQL = f"kind = '{ALARM_STEP}'"
ALARM_STEPS = entries.c.kind == sa.literal_column(repr(ALARM_STEP))
sa.Index(
    "ix_journal_entries_alarm",
    entries.c.municipality,
    entries.c.patient,
    entries.c.alarm_id,
    entries.c.alarm_segment,
    sqlite_where=sa.text(ALARM_STEP_SQL),
    postgresql_where=sa.text(ALARM_STEP_SQL),
)

# -- pull mode (vkp_journaling.domain.pull; migration 0003) ------------------------------------
#: Notes still to number: waiting, not numbered (every waiting note of a push municipality).
TO_NUMBER_SQL = f"pull_sequence IS NULL AND {WAITING_NOTE_SQL}"
TO_NUMBER = sa.and_(entries.c.pull_sequence.is_(None), WAITING_NOTE)
#: Numbered notes not yet answered: where a first page starts, and what a page reads.
OFFERED_SQL = (
    "pull_sequence IS NOT NULL AND "
    f"state IN ({', '.join(repr(state.value) for state in (*WAITING, EntryState.READ))})"
)
OFFERED = sa.and_(
    entries.c.pull_sequence.is_not(None),
    entries.c.state.in_(
        [sa.literal_column(repr(state.value)) for state in (*WAITING, EntryState.READ)]
    ),
)
READ_SQL = f"state = '{EntryState.READ.value}'"
sa.Index(
    "ix_journal_entries_pull_sequence",
    entries.c.municipality,
    entries.c.pull_sequence,
    unique=True,
    sqlite_where=sa.text("pull_sequence IS NOT NULL"),
    postgresql_where=sa.text("pull_sequence IS NOT NULL"),
)
sa.Index(
    "ix_journal_entries_to_number",
    entries.c.municipality,
    entries.c.create_time,
    sqlite_where=sa.text(TO_NUMBER_SQL),
    postgresql_where=sa.text(TO_NUMBER_SQL),
)
sa.Index(
    "ix_journal_entries_offered",
    entries.c.municipality,
    entries.c.pull_sequence,
    sqlite_where=sa.text(OFFERED_SQL),
    postgresql_where=sa.text(OFFERED_SQL),
)
sa.Index(
    "ix_journal_entries_read",
    entries.c.municipality,
    entries.c.read_until,
    sqlite_where=sa.text(READ_SQL),
    postgresql_where=sa.text(READ_SQL),
)
