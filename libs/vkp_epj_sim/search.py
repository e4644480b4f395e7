"""FHIR search: the parameters each resource type supports, what a stored resource is found
by (its index entries), and a search request read into a `Query`.

Every type supports `_id` and the result parameters `_count` and `_summary=count`. The types the
lookup reads have the parameters it uses; any other type (the notes the hub writes) has
`identifier`, `patient`, `subject` and `status`. Token values are `code`, `system|code`,
`system|` or `|code`; reference values `Type/id`, `id` or an absolute URL ending in `Type/id`;
a comma means OR, a repeated parameter AND. Modifiers and unknown parameters are refused (400),
so a search is never silently wider than its caller meant; so are more than `MAX_VALUES` values
of one parameter or `MAX_PARAMETERS` parameters (400, `too-costly`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

Kind = Literal["token", "reference"]
Parameter = tuple[Kind, tuple[str, ...]]

#: Parameters of the types the lookup reads: name -> (kind, the elements that hold it).
_SPECIFIC: dict[str, dict[str, Parameter]] = {
    "Patient": {"identifier": ("token", ("identifier",))},
    "Practitioner": {"identifier": ("token", ("identifier",))},
    "EpisodeOfCare": {
        "identifier": ("token", ("identifier",)),
        "patient": ("reference", ("patient",)),
        "status": ("token", ("status",)),
        "type": ("token", ("type",)),
    },
    "CarePlan": {
        "identifier": ("token", ("identifier",)),
        "subject": ("reference", ("subject",)),
        "patient": ("reference", ("subject",)),
        "category": ("token", ("category",)),
        "status": ("token", ("status",)),
    },
    "RelatedPerson": {
        "identifier": ("token", ("identifier",)),
        "patient": ("reference", ("patient",)),
    },
    "AllergyIntolerance": {
        "identifier": ("token", ("identifier",)),
        "patient": ("reference", ("patient",)),
    },
    "Flag": {
        "identifier": ("token", ("identifier",)),
        "subject": ("reference", ("subject",)),
        "patient": ("reference", ("subject",)),
    },
}
_GENERIC: dict[str, Parameter] = {
    "identifier": ("token", ("identifier",)),
    "patient": ("reference", ("patient", "subject")),
    "subject": ("reference", ("subject",)),
    "status": ("token", ("status",)),
}
#: Result parameters: they shape the answer, not which resources match.
RESULT_PARAMETERS = frozenset({"_count", "_summary", "_format", "_pretty", "_total"})
PAGE_PARAMETERS = frozenset({"_getpages", "_getpagesoffset"})
DEFAULT_COUNT = 100
MAX_COUNT = 1000
#: The most values one parameter ORs together (`a,b,c`), and the most parameters that select
#: in one search (a repeated parameter ANDs); a search asking for more is refused (400,
#: `too-costly`), so its cost has a bound.
MAX_VALUES = 1000
MAX_PARAMETERS = 100

#: The types whose parameters the capability statement lists one by one.
LOOKUP_TYPES = tuple(_SPECIFIC)


class SearchError(ValueError):
    """The search cannot be run; the message says why without repeating any value."""

    #: The OperationOutcome's issue code.
    code = "invalid"


class TooCostly(SearchError):
    """The search asks for more values or parameters than the simulator answers."""

    code = "too-costly"


def parameters(resource_type: str) -> dict[str, Parameter]:
    """The search parameters of a type (besides `_id`): name -> (kind, elements)."""
    return _SPECIFIC.get(resource_type, _GENERIC)


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system
    code: str | None  # None: any code (the value was `system|`)


@dataclass(frozen=True)
class Condition:
    """One parameter occurrence: matches when the resource has any of the values."""

    name: str
    kind: Kind | Literal["id"]
    values: tuple[Token, ...]


@dataclass(frozen=True)
class Query:
    resource_type: str
    conditions: tuple[Condition, ...]
    count: int
    offset: int
    summary_count: bool

    @property
    def key(self) -> str:
        """The parameter names, sorted: what the counters count by."""
        return " ".join(sorted({c.name for c in self.conditions}))


def _token(value: str) -> Token:
    if "|" not in value:
        return Token(None, value)
    system, code = value.split("|", 1)
    return Token(system, code or None)


def _reference(value: str) -> Token:
    """A reference value as (type, id); the type is None when only the id is given."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return Token(parts[-2], parts[-1])
    if len(parts) == 1:
        return Token(None, parts[0])
    raise SearchError("a reference is Type/id, id or a URL ending in Type/id")


def _number(name: str, value: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()):
        raise SearchError(f"{name} must be a whole number")
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(high)):  # above high; int() refuses thousands of digits
        return high
    return max(low, min(high, int(digits)))


def _values(name: str, value: str) -> list[str]:
    """A parameter's values (a comma means OR); TooCostly when there are over MAX_VALUES."""
    values = value.split(",", MAX_VALUES)
    if len(values) > MAX_VALUES:
        raise TooCostly(
            f"{name} has more than {MAX_VALUES} values; at most {MAX_VALUES} (comma-separated) "
            "values per parameter are searched, so split the search"
        )
    return values


def parse_query(resource_type: str, params: Sequence[tuple[str, str]]) -> Query:
    """A search request's parameters (from the query string or a form body) as a Query."""
    known = parameters(resource_type)
    conditions: list[Condition] = []
    count, offset, summary_count = DEFAULT_COUNT, 0, False
    for name, value in params:
        if name == "_count":
            count = _number(name, value, 0, MAX_COUNT)
        elif name == "_getpagesoffset":
            offset = _number(name, value, 0, 10**9)
        elif name == "_summary":
            if value not in ("count", "false"):
                raise SearchError("_summary supports count and false only")
            summary_count = value == "count"
        elif name in RESULT_PARAMETERS or name in PAGE_PARAMETERS:
            continue
        elif ":" in name:
            raise SearchError("search modifiers are not supported")
        elif not value:
            raise SearchError(f"parameter {name} has no value")
        elif name not in known and name != "_id":
            raise SearchError(f"{resource_type} has no search parameter {name}")
        elif len(conditions) == MAX_PARAMETERS:
            raise TooCostly(f"at most {MAX_PARAMETERS} search parameters select in one search")
        elif name == "_id":
            ids = tuple(Token(None, v) for v in _values(name, value))
            conditions.append(Condition(name, "id", ids))
        else:
            kind = known[name][0]
            read = _token if kind == "token" else _reference
            conditions.append(Condition(name, kind, tuple(read(v) for v in _values(name, value))))
    return Query(resource_type, tuple(conditions), count, offset, summary_count)


def _codings(value: Any) -> Iterator[tuple[str | None, str]]:
    """Tokens of an element: an Identifier, a CodeableConcept, a Coding or a code, or a list."""
    if isinstance(value, list):
        for item in value:
            yield from _codings(item)
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, Mapping):
        if "coding" in value:
            yield from _codings(value["coding"])
        elif "value" in value and isinstance(value["value"], str):  # Identifier
            yield value.get("system"), value["value"]
        elif "code" in value and isinstance(value["code"], str):  # Coding
            yield value.get("system"), value["code"]


def _references(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, Mapping) and isinstance(value.get("reference"), str):
        try:
            token = _reference(value["reference"])
        except SearchError:
            return
        if token.code:
            yield token.system, token.code


@dataclass(frozen=True)
class IndexEntry:
    name: str
    system: str  # '' when none: the token's system or the reference's type
    value: str


def index_entries(resource: Mapping[str, Any]) -> list[IndexEntry]:
    """What a resource is found by, for every search parameter of its type."""
    entries: set[IndexEntry] = set()
    for name, (kind, elements) in parameters(str(resource["resourceType"])).items():
        for element in elements:
            found = resource.get(element)
            if found is None:
                continue
            pairs = _codings(found) if kind == "token" else _references(found)
            if name == "patient":  # a patient parameter finds references to Patients only
                pairs = ((t, v) for t, v in pairs if t in (None, "Patient"))
            entries.update(IndexEntry(name, system or "", value) for system, value in pairs)
    return sorted(entries, key=lambda e: (e.name, e.system, e.value))


def identifier_condition(query: str) -> Token:
    """The identifier of a conditional create's `ifNoneExist` (`identifier=system|value`)."""
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "identifier" or not pairs[0][1]:
        raise SearchError("ifNoneExist supports one identifier=system|value only")
    token = _token(pairs[0][1])
    if token.code is None:
        raise SearchError("ifNoneExist needs an identifier value")
    return token
