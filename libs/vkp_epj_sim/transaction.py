"""A transaction Bundle read into the creates it asks for, every resource checked by its
`fhir.resources.R4B` model (and stored as it came); and the rewriting of references between its
entries.

Entries are creates (`request.method` POST, `request.url` the resource type), each optionally
conditional (`request.ifNoneExist: identifier=system|value`). A malformed bundle or resource is
a `BundleError` with status 400; a well-formed request the simulator does not do (another
method, another kind of ifNoneExist) has status 422. Messages name where the problem is, never
a value. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource

from vkp_epj_sim.search import SearchError, Token, identifier_condition

Json = dict[str, Any]


class BundleError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PlannedCreate:
    full_url: str | None
    resource: Json
    condition: Token | None  # the ifNoneExist identifier

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])


def resource_model(resource_type: str) -> type[Resource] | None:
    """The R4B model of a resource type, or None when there is no such resource type."""
    if not resource_type.isascii() or not resource_type.isalpha():
        return None
    try:
        model = get_fhir_model_class(resource_type)
    except (ValueError, KeyError):
        return None
    return model if issubclass(model, Resource) else None


def _problems(error: pydantic.ValidationError, where: str) -> str:
    found = [
        f"{where}.{'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    return "; ".join(found[:10])


def check_resource(resource: Any, where: str) -> Json:
    """The resource, once its R4B model has read it (a copy, to store as it came: writing it
    out again through the model would cost twice the check); BundleError(400) when it is not
    one."""
    if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
        raise BundleError(400, f"{where} is not a FHIR resource")
    model = resource_model(resource["resourceType"])
    if model is None:
        raise BundleError(400, f"{where} has an unknown resourceType")
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        raise BundleError(400, _problems(exc, where)) from None
    except (ValueError, TypeError, KeyError):
        raise BundleError(400, f"{where} is not a valid {model.__name__}") from None
    return dict(resource)


def read_transaction(body: Any) -> list[PlannedCreate]:
    """The creates of a transaction Bundle, in entry order."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "Bundle":
        raise BundleError(400, "the body is not a Bundle")
    entries = body.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise BundleError(400, "Bundle.entry is not a list of entries")
    shell = {**body, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries]}
    try:
        Bundle.model_validate(shell)
    except pydantic.ValidationError as exc:
        raise BundleError(400, _problems(exc, "Bundle")) from None
    if body.get("type") != "transaction":
        raise BundleError(422, "only transaction bundles are accepted")
    planned: list[PlannedCreate] = []
    for n, entry in enumerate(entries):
        where = f"Bundle.entry[{n}]"
        if "resource" not in entry:
            raise BundleError(400, f"{where} has no resource")
        resource = check_resource(entry["resource"], f"{where}.resource")
        request = entry.get("request")
        if not isinstance(request, Mapping):
            raise BundleError(400, f"{where} has no request")
        if request.get("method") != "POST":
            raise BundleError(422, f"{where}.request: only POST (create) is supported")
        if request.get("url") != resource["resourceType"]:
            raise BundleError(400, f"{where}.request.url is not the resource's type")
        condition = None
        if request.get("ifNoneExist"):
            try:
                condition = identifier_condition(str(request["ifNoneExist"]))
            except SearchError as exc:
                raise BundleError(422, f"{where}.request.ifNoneExist: {exc}") from None
        resource.pop("id", None)
        planned.append(PlannedCreate(entry.get("fullUrl"), resource, condition))
    return planned


def rewrite_references(value: Any, targets: Mapping[str, str]) -> Any:
    """The value with every `reference` that names an entry's fullUrl pointing at the
    resource that entry created or found instead (`Type/id`)."""
    if isinstance(value, list):
        return [rewrite_references(v, targets) for v in value]
    if isinstance(value, Mapping):
        rewritten = {k: rewrite_references(v, targets) for k, v in value.items()}
        reference = rewritten.get("reference")
        if isinstance(reference, str) and reference in targets:
            rewritten["reference"] = targets[reference]
        return rewritten
    return value
