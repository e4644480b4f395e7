"""Updates with a field mask (AIP-134): the fields the mask names and their new values, checked
and applied to the stored resource.

A value left unset is empty (`""`, `()`) or None. An update may clear an optional field, but
not one a resource cannot be without: each such field in the mask must be set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from vkp_lib.errors import FieldViolation, InvalidArgument
from vkp_registry.domain.model import (
    Action,
    Adapter,
    Agreement,
    AgreementState,
    DeliveryMode,
    EpjEndpoint,
    Municipality,
    MunicipalityState,
    ServiceCode,
    VendorSystem,
)
from vkp_registry.domain.reasons import Reason


def check_masked_fields_set(
    message: str, mask: frozenset[str], present: Mapping[str, bool]
) -> None:
    """Each field of `present` (a field a resource needs: is it set?) in the mask must be set."""
    missing = [name for name, is_set in present.items() if name in mask and not is_set]
    if missing:
        raise InvalidArgument(
            Reason.INVALID_UPDATE_MASK,
            f"{', '.join(missing)} in update_mask but not set",
            violations=[
                FieldViolation(f"{message}.{name}", "in update_mask, so it must be set")
                for name in missing
            ],
        )


@dataclass(frozen=True)
class MunicipalityUpdate:
    mask: frozenset[str]
    display_name: str = ""
    state: MunicipalityState | None = None

    def check(self) -> None:
        check_masked_fields_set(
            "municipality",
            self.mask,
            {"display_name": bool(self.display_name), "state": self.state is not None},
        )

    def apply(self, m: Municipality) -> Municipality:
        if "display_name" in self.mask:
            m = replace(m, display_name=self.display_name)
        if "state" in self.mask and self.state is not None:
            m = replace(m, state=self.state)
        return m


@dataclass(frozen=True)
class VendorSystemUpdate:
    mask: frozenset[str]
    display_name: str = ""
    client_ids: tuple[str, ...] = ()

    def check(self) -> None:
        check_masked_fields_set(
            "vendor_system",
            self.mask,
            {"display_name": bool(self.display_name), "client_ids": bool(self.client_ids)},
        )

    def apply(self, s: VendorSystem) -> VendorSystem:
        if "display_name" in self.mask:
            s = replace(s, display_name=self.display_name)
        if "client_ids" in self.mask:
            s = replace(s, client_ids=self.client_ids)
        return s


@dataclass(frozen=True)
class EpjEndpointUpdate:
    mask: frozenset[str]
    adapter: Adapter | None = None
    base_url: str = ""
    delivery_mode: DeliveryMode | None = None
    credentials_secret: str = ""
    request_timeout_seconds: float | None = None
    connect_timeout_seconds: float | None = None

    def check(self) -> None:
        check_masked_fields_set(
            "epj_endpoint",
            self.mask,
            {
                "adapter": self.adapter is not None,
                "base_url": bool(self.base_url),
                "delivery_mode": self.delivery_mode is not None,
            },
        )

    def apply(self, e: EpjEndpoint) -> EpjEndpoint:
        values: dict[str, Any] = {}
        if "adapter" in self.mask and self.adapter is not None:
            values["adapter"] = self.adapter
        if "base_url" in self.mask:
            values["base_url"] = self.base_url
        if "delivery_mode" in self.mask and self.delivery_mode is not None:
            values["delivery_mode"] = self.delivery_mode
        if "credentials_secret" in self.mask:
            values["credentials_secret"] = self.credentials_secret
        if "request_timeout" in self.mask:
            values["request_timeout_seconds"] = self.request_timeout_seconds
        if "connect_timeout" in self.mask:
            values["connect_timeout_seconds"] = self.connect_timeout_seconds
        return replace(e, **values)


@dataclass(frozen=True)
class AgreementUpdate:
    mask: frozenset[str]
    service_codes: tuple[ServiceCode, ...] = ()
    actions: tuple[Action, ...] = ()
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    state: AgreementState | None = None

    def check(self) -> None:
        check_masked_fields_set(
            "agreement",
            self.mask,
            {
                "service_codes": bool(self.service_codes),
                "actions": bool(self.actions),
                "state": self.state is not None,
            },
        )

    def apply(self, a: Agreement) -> Agreement:
        values: dict[str, Any] = {}
        if "service_codes" in self.mask:
            values["service_codes"] = self.service_codes
        if "actions" in self.mask:
            values["actions"] = self.actions
        if "validity" in self.mask:
            values["valid_from"], values["valid_until"] = self.valid_from, self.valid_until
        if "state" in self.mask and self.state is not None:
            values["state"] = self.state
        return replace(a, **values)
