"""The registry's own ErrorInfo reasons: every one its code raises, and no other.

The reasons of the libraries it runs on (the contract's field rules, page tokens, the hub's
authentication) are theirs; the contract lists both, above the service in registry.proto.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # INVALID_ARGUMENT: what the contract's field rules cannot check.
    INVALID_ORGANIZATION_NUMBER = "INVALID_ORGANIZATION_NUMBER"
    INVALID_MUNICIPALITY_NUMBER = "INVALID_MUNICIPALITY_NUMBER"
    INVALID_UPDATE_MASK = "INVALID_UPDATE_MASK"
    # NOT_FOUND
    MUNICIPALITY_NOT_FOUND = "MUNICIPALITY_NOT_FOUND"
    VENDOR_NOT_FOUND = "VENDOR_NOT_FOUND"
    VENDOR_SYSTEM_NOT_FOUND = "VENDOR_SYSTEM_NOT_FOUND"
    EPJ_ENDPOINT_NOT_FOUND = "EPJ_ENDPOINT_NOT_FOUND"
    AGREEMENT_NOT_FOUND = "AGREEMENT_NOT_FOUND"
    # ALREADY_EXISTS
    MUNICIPALITY_EXISTS = "MUNICIPALITY_EXISTS"
    VENDOR_EXISTS = "VENDOR_EXISTS"
    VENDOR_SYSTEM_EXISTS = "VENDOR_SYSTEM_EXISTS"
    EPJ_ENDPOINT_EXISTS = "EPJ_ENDPOINT_EXISTS"
    AGREEMENT_EXISTS = "AGREEMENT_EXISTS"
    CLIENT_ID_TAKEN = "CLIENT_ID_TAKEN"
    # FAILED_PRECONDITION
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
