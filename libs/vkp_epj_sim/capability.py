"""The CapabilityStatement at `[base]/metadata`: FHIR 4.0.1, JSON, the types the lookup reads
with their search parameters, and transactions of conditional creates of any resource type."""

from __future__ import annotations

from typing import Any

from vkp_epj_sim.codes import FHIR_JSON, FHIR_VERSION
from vkp_epj_sim.records import checked
from vkp_epj_sim.search import LOOKUP_TYPES, MAX_PARAMETERS, MAX_VALUES, parameters

Json = dict[str, Any]
SOFTWARE = "VKP EPJ simulator"


def _resource(resource_type: str) -> Json:
    search = [{"name": "_id", "type": "token"}] + [
        {"name": name, "type": kind} for name, (kind, _) in parameters(resource_type).items()
    ]
    return {
        "type": resource_type,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "conditionalCreate": True,
        "searchParam": search,
    }


def capability_statement(base_url: str, description: str, date: str) -> Json:
    """The statement of one FHIR base (a municipality's, or the one that spans them all)."""
    return checked(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": date,
            "publisher": "VKP",
            "kind": "instance",
            "software": {"name": SOFTWARE},
            "implementation": {"description": description, "url": base_url},
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_JSON, "json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": (
                        "Search with GET [type]?params or POST [type]/_search (form body); "
                        "_count, _summary=count and _id on every type; at most "
                        f"{MAX_VALUES} comma-separated (OR) values per parameter and "
                        f"{MAX_PARAMETERS} parameters per search. Transactions: POST "
                        "[base] with a transaction Bundle of creates of any resource type, "
                        "each optionally conditional on ifNoneExist=identifier=system|value. "
                        "Other types than those listed have identifier, patient, subject and "
                        "status."
                    ),
                    "resource": [_resource(t) for t in LOOKUP_TYPES],
                    "interaction": [{"code": "transaction"}],
                }
            ],
        }
    )
