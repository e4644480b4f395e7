"""Who may call each RPC of the registry: administrators, and the hub's own services."""

from __future__ import annotations

from vkp_lib.identity.permissions import HUB_SERVICE, AnyOf, Permissions, Scope, Scopes

ADMIN = Scope(Scopes.ADMIN)

PERMISSIONS = Permissions(
    "vkp.registry.v1.RegistryService",
    {
        "CreateMunicipality": ADMIN,
        "GetMunicipality": ADMIN,
        "ListMunicipalities": ADMIN,
        "UpdateMunicipality": ADMIN,
        "CreateVendor": ADMIN,
        "GetVendor": ADMIN,
        "ListVendors": ADMIN,
        "CreateVendorSystem": ADMIN,
        "GetVendorSystem": ADMIN,
        "ListVendorSystems": ADMIN,
        "UpdateVendorSystem": ADMIN,
        "CreateEpjEndpoint": ADMIN,
        # Journaling and lookup read the endpoint to reach a municipality's EPJ.
        "GetEpjEndpoint": AnyOf((ADMIN, HUB_SERVICE)),
        "UpdateEpjEndpoint": ADMIN,
        "DeleteEpjEndpoint": ADMIN,
        "CreateAgreement": ADMIN,
        "GetAgreement": ADMIN,
        "ListAgreements": ADMIN,
        "UpdateAgreement": ADMIN,
        "DeleteAgreement": ADMIN,
        "GetPartnerProfile": ADMIN,
        "UpdatePartnerProfile": ADMIN,
        "CheckAccess": HUB_SERVICE,
        "WatchChanges": HUB_SERVICE,
    },
)
