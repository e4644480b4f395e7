"""The ErrorInfo reasons the journaling service raises itself (domain journaling.vkp). The
contract lists them, with the shared reasons the hub's libraries raise for it (field rules, page
tokens, authentication, methods not implemented yet), in the comment above JournalingService in
protos/vkp/journaling/v1/journaling.proto."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    #: NOT_FOUND: GetEntry or RetryEntry of an entry the service does not have.
    ENTRY_NOT_FOUND = "ENTRY_NOT_FOUND"
    #: FAILED_PRECONDITION: RetryEntry of an entry that is not a dead letter.
    ENTRY_NOT_DEAD = "ENTRY_NOT_DEAD"
