"""The ErrorInfo reasons the journaling service raises itself (domain journaling.vkp). The
contract lists them, with the shared reasons the hub's libraries raise for it (field rules, page
tokens, authentication, methods not implemented yet), in the comment above JournalingService in
protos/vkp/journaling/v1/journaling.proto."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    #: NOT_FOUND: GetEntry or RetryEntry of an entry the service does not have; an
    #: acknowledgement (item) of an entry that is not the municipality's.
    ENTRY_NOT_FOUND = "ENTRY_NOT_FOUND"
    #: FAILED_PRECONDITION: RetryEntry of an entry that is not a dead letter.
    ENTRY_NOT_DEAD = "ENTRY_NOT_DEAD"
    #: PERMISSION_DENIED: ListPending or Acknowledge naming another municipality than the
    #: caller's own.
    WRONG_MUNICIPALITY = "WRONG_MUNICIPALITY"
    #: FAILED_PRECONDITION: ListPending or Acknowledge for a municipality whose EPJ endpoint
    #: does not pull.
    NOT_PULL_MODE = "NOT_PULL_MODE"
    #: FAILED_PRECONDITION (item): an acknowledgement of a note never offered.
    ENTRY_NOT_READ = "ENTRY_NOT_READ"
    #: FAILED_PRECONDITION (item): an acknowledgement other than the one that ended the note.
    ENTRY_ALREADY_FINAL = "ENTRY_ALREADY_FINAL"
