"""The hub's resource names (AIP-122), each pattern written once: format a name from its ids,
parse the ids back out of one. Pure: no gRPC.

    AGREEMENT.format(organization_number="964120005", agreement_id="dispenser")
        -> "municipalities/964120005/agreements/dispenser"
    AGREEMENT.parse("municipalities/964120005/agreements/dispenser")
        -> {"organization_number": "964120005", "agreement_id": "dispenser"}

A name that does not fit its pattern parses to None; no segment is empty or holds a slash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_VARIABLE = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Pattern:
    """One resource-name pattern: literal collection segments and `{variable}` ids."""

    template: str
    variables: tuple[str, ...] = field(init=False)
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        variables = tuple(_VARIABLE.findall(self.template))
        regex = "^" + _VARIABLE.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", self.template) + "$"
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "_regex", re.compile(regex))

    def format(self, **ids: str) -> str:
        if set(ids) != set(self.variables):
            raise ValueError(f"{self.template} takes {', '.join(self.variables)}")
        for name, value in ids.items():
            if not value or "/" in value:
                raise ValueError(f"{name} must be a non-empty segment without '/'")
        return self.template.format(**ids)

    def parse(self, name: str) -> dict[str, str] | None:
        """The ids in `name`, or None when it is not a name of this pattern."""
        found = self._regex.match(name)
        return found.groupdict() if found else None

    def id_of(self, name: str, variable: str | None = None) -> str | None:
        """One id of `name` (the last variable unless named), or None when it does not fit."""
        ids = self.parse(name)
        return ids[variable or self.variables[-1]] if ids else None


MUNICIPALITY = Pattern("municipalities/{organization_number}")
AGREEMENT = Pattern("municipalities/{organization_number}/agreements/{agreement_id}")
EPJ_ENDPOINT = Pattern("municipalities/{organization_number}/epjEndpoint")
PARTNER_PROFILE = Pattern("municipalities/{organization_number}/partnerProfile")
VENDOR = Pattern("vendors/{organization_number}")
VENDOR_SYSTEM = Pattern("vendors/{organization_number}/systems/{system_id}")
EVENT = Pattern("events/{event_id}")
ENTRY = Pattern("entries/{entry_id}")

#: Every pattern, for the tests that keep the contracts' documentation in step.
PATTERNS = (
    MUNICIPALITY,
    AGREEMENT,
    EPJ_ENDPOINT,
    PARTNER_PROFILE,
    VENDOR,
    VENDOR_SYSTEM,
    EVENT,
    ENTRY,
)


def organization_of(name: str) -> str | None:
    """The organisation number a municipality's or vendor's name (or a name under one) starts
    with, or None."""
    collection, _, rest = name.partition("/")
    if collection not in ("municipalities", "vendors"):
        return None
    organization_number = rest.partition("/")[0]
    return organization_number or None
