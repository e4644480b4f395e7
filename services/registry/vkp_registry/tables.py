"""The registry's tables, and how each kind of resource is kept in them.

Each resource is a row keyed by its name, with the columns its lists filter on and its body as
JSON. The revision counter is one row; `registry_changes` holds every change with the resource
as it then was; `registry_requests` the first answer to each create's request id. The schema is
the migrations'; these are the store's view of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter

from vkp_registry.domain.model import (
    Agreement,
    EpjEndpoint,
    Municipality,
    Named,
    PartnerProfile,
    Vendor,
    VendorSystem,
)

metadata = sa.MetaData()
revision_table = sa.Table(
    "registry_revision",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
)
changes_table = sa.Table(
    "registry_changes",
    metadata,
    sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("commit_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("change_type", sa.String(16), nullable=False),
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("resource_name", sa.String(300), nullable=False),
    sa.Column("body", sa.Text, nullable=True),
)
requests_table = sa.Table(
    "registry_requests",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
)


def _resource_table(name: str, *columns: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("name", sa.String(300), primary_key=True),
        *columns,
        sa.Column("body", sa.Text, nullable=False),
    )


municipalities_table = _resource_table(
    "registry_municipalities",
    sa.Column("municipality_number", sa.String(4), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
)
vendors_table = _resource_table("registry_vendors")
vendor_systems_table = _resource_table(
    "registry_vendor_systems", sa.Column("vendor", sa.String(40), nullable=False, index=True)
)
client_ids_table = sa.Table(
    "registry_client_ids",
    metadata,
    sa.Column("client_id", sa.String(200), primary_key=True),
    sa.Column("vendor_system", sa.String(300), nullable=False, index=True),
)
epj_endpoints_table = _resource_table("registry_epj_endpoints")
agreements_table = _resource_table(
    "registry_agreements",
    sa.Column("municipality", sa.String(9), nullable=False, index=True),
    sa.Column("vendor_system", sa.String(300), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
)
partner_profiles_table = _resource_table("registry_partner_profiles")


# -- how each kind of resource is kept ---------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How one kind of resource is stored: the `resource_type` of its changes and requests, its
    table, the columns beside its body, and its JSON form."""

    type_name: str
    resource: type[Any]
    table: sa.Table
    columns: Callable[[Any], dict[str, Any]]

    @property
    def adapter(self) -> TypeAdapter[Any]:
        return _ADAPTERS[self.type_name]

    def dump(self, resource: Named) -> str:
        return self.adapter.dump_json(resource).decode()

    def load(self, body: str) -> Any:
        return self.adapter.validate_json(body)


KINDS = {
    kind.type_name: kind
    for kind in (
        Kind(
            "municipality",
            Municipality,
            municipalities_table,
            lambda m: {"municipality_number": m.municipality_number, "state": m.state.value},
        ),
        Kind("vendor", Vendor, vendors_table, lambda v: {}),
        Kind(
            "vendor_system",
            VendorSystem,
            vendor_systems_table,
            lambda s: {"vendor": s.vendor},
        ),
        Kind("epj_endpoint", EpjEndpoint, epj_endpoints_table, lambda e: {}),
        Kind(
            "agreement",
            Agreement,
            agreements_table,
            lambda a: {
                "municipality": a.municipality,
                "vendor_system": a.vendor_system,
                "state": a.state.value,
            },
        ),
        Kind("partner_profile", PartnerProfile, partner_profiles_table, lambda p: {}),
    )
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(kind.resource) for name, kind in KINDS.items()
}
_KIND_OF: dict[type[Any], Kind] = {kind.resource: kind for kind in KINDS.values()}


def kind_of(resource_type: type[Named]) -> Kind:
    return _KIND_OF[resource_type]
