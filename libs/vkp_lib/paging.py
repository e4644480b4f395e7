"""AIP-158 page tokens: where the last page ended and the filters it was asked with, opaque to
the caller. A token given for other filters, or not given by us, is INVALID_PAGE_TOKEN."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from vkp_lib.errors import InvalidArgument

T = TypeVar("T")


def page_token(position: Sequence[str], filters: str) -> str:
    """The token of the next page, after `position` (the last item's sort key, as strings)."""
    raw = json.dumps({"p": list(position), "f": filters}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def position(token: str, filters: str, parse: Callable[[list[str]], T]) -> T | None:
    """Where the page of `token` starts, through `parse`; None for the first page."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        found = parse([str(part) for part in data["p"]])
        same = data["f"] == filters
    except (ValueError, KeyError, TypeError, IndexError):
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN", "page_token is not one this list gave"
        ) from None
    if not same:
        raise InvalidArgument("INVALID_PAGE_TOKEN", "page_token belongs to other filters")
    return found
