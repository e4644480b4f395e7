"""Between the registry's contract (vkp.registry.v1) and its domain: resources, requests' names,
field-mask updates, request keys, pages, decisions and changes.

The contract's field rules have been checked before any of this runs, so names fit their
patterns and enum values are defined.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2 as pb
from vkp_lib import names
from vkp_lib.timestamps import timestamp
from vkp_registry.domain.model import (
    Action,
    Adapter,
    Agreement,
    AgreementState,
    Change,
    ChangeType,
    Decision,
    DeliveryMode,
    DenialReason,
    EpjEndpoint,
    Municipality,
    MunicipalityState,
    PageRequest,
    PartnerProfile,
    RequestKey,
    Resource,
    ServiceCode,
    Vendor,
    VendorSystem,
)
from vkp_registry.domain.rules import fingerprint
from vkp_registry.domain.updates import (
    AgreementUpdate,
    EpjEndpointUpdate,
    MunicipalityUpdate,
    VendorSystemUpdate,
)

SERVICE_CODES = {
    common_pb2.SERVICE_CODE_RT: ServiceCode.RT,
    common_pb2.SERVICE_CODE_TA: ServiceCode.TA,
    common_pb2.SERVICE_CODE_GPS: ServiceCode.GPS,
    common_pb2.SERVICE_CODE_MD: ServiceCode.MD,
    common_pb2.SERVICE_CODE_DT: ServiceCode.DT,
    common_pb2.SERVICE_CODE_DHO: ServiceCode.DHO,
}
SERVICE_CODE_PB = {v: k for k, v in SERVICE_CODES.items()}
ACTIONS = {pb.ACCESS_ACTION_JOURNAL: Action.JOURNAL, pb.ACCESS_ACTION_LOOKUP: Action.LOOKUP}
ACTION_PB = {v: k for k, v in ACTIONS.items()}
MUNICIPALITY_STATES = {
    pb.MUNICIPALITY_STATE_ACTIVE: MunicipalityState.ACTIVE,
    pb.MUNICIPALITY_STATE_SUSPENDED: MunicipalityState.SUSPENDED,
}
MUNICIPALITY_STATE_PB = {v: k for k, v in MUNICIPALITY_STATES.items()}
AGREEMENT_STATES = {
    pb.AGREEMENT_STATE_ACTIVE: AgreementState.ACTIVE,
    pb.AGREEMENT_STATE_SUSPENDED: AgreementState.SUSPENDED,
    pb.AGREEMENT_STATE_REVOKED: AgreementState.REVOKED,
}
AGREEMENT_STATE_PB = {v: k for k, v in AGREEMENT_STATES.items()}
ADAPTERS = {pb.EPJ_ADAPTER_FHIR: Adapter.FHIR}
ADAPTER_PB = {v: k for k, v in ADAPTERS.items()}
DELIVERY_MODES = {
    pb.DELIVERY_MODE_PUSH: DeliveryMode.PUSH,
    pb.DELIVERY_MODE_PULL: DeliveryMode.PULL,
}
DELIVERY_MODE_PB = {v: k for k, v in DELIVERY_MODES.items()}
DENIAL_PB = {
    DenialReason.NOT_ACTIVE: pb.DENIAL_REASON_NOT_ACTIVE,
    DenialReason.NOT_ALLOWED: pb.DENIAL_REASON_NOT_ALLOWED,
    DenialReason.NO_ACCESS: pb.DENIAL_REASON_NO_ACCESS,
    DenialReason.UNKNOWN_ORGANIZATION: pb.DENIAL_REASON_UNKNOWN_ORGANIZATION,
}
CHANGE_TYPE_PB = {
    ChangeType.CREATED: pb.CHANGE_TYPE_CREATED,
    ChangeType.UPDATED: pb.CHANGE_TYPE_UPDATED,
    ChangeType.DELETED: pb.CHANGE_TYPE_DELETED,
}


def when(message: Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def seconds(value: Duration) -> float:
    return value.seconds + value.nanos / 1e9


def duration(value: float | None) -> Duration | None:
    if value is None:
        return None
    result = Duration()
    result.FromNanoseconds(round(value * 1e9))
    return result


# -- names, request keys and pages -------------------------------------------------------------

#: The collection id that stands for every parent in a list (`municipalities/-`).
EVERY = "-"


def organization_number(pattern: names.Pattern, name: str) -> str:
    """The organisation number in a name of `pattern`."""
    found = pattern.id_of(name, "organization_number")
    if found is None:  # the contract's field rules refuse such a name before a servicer runs
        raise ValueError(f"not a name of the form {pattern.template}")
    return found


def organization_filter(pattern: names.Pattern, parent: str) -> str | None:
    """The organisation number of a list's parent; None for every one (`.../-`)."""
    found = organization_number(pattern, parent)
    return None if found == EVERY else found


CreateRequest: TypeAlias = (
    pb.CreateMunicipalityRequest
    | pb.CreateVendorRequest
    | pb.CreateVendorSystemRequest
    | pb.CreateEpjEndpointRequest
    | pb.CreateAgreementRequest
)


def request_key(request: CreateRequest) -> RequestKey | None:
    """A create's request id, with its method and its content's fingerprint; None without."""
    if not request.request_id:
        return None
    method = request.DESCRIPTOR.name.removesuffix("Request")
    content = request.SerializeToString(deterministic=True)
    return RequestKey(request.request_id, method, fingerprint(content))


ListRequest: TypeAlias = (
    pb.ListMunicipalitiesRequest
    | pb.ListVendorsRequest
    | pb.ListVendorSystemsRequest
    | pb.ListAgreementsRequest
)


def page(request: ListRequest, *filters: object) -> PageRequest:
    """Which page; `filters` are the request's filters, which its page tokens carry."""
    return PageRequest(request.page_size, request.page_token, "|".join(map(str, filters)))


# -- municipalities ----------------------------------------------------------------------------


def municipality_to_pb(m: Municipality) -> pb.Municipality:
    return pb.Municipality(
        name=m.name,
        organization_number=m.organization_number,
        municipality_number=m.municipality_number,
        display_name=m.display_name,
        state=MUNICIPALITY_STATE_PB[m.state],
        create_time=timestamp(m.create_time),
        update_time=timestamp(m.update_time),
        revision=m.revision,
    )


def municipality_from_pb(m: pb.Municipality) -> Municipality:
    return Municipality(
        organization_number=m.organization_number,
        municipality_number=m.municipality_number,
        display_name=m.display_name,
        state=MUNICIPALITY_STATES.get(m.state, MunicipalityState.ACTIVE),
    )


def municipality_update(request: pb.UpdateMunicipalityRequest) -> MunicipalityUpdate:
    given = request.municipality
    return MunicipalityUpdate(
        frozenset(request.update_mask.paths),
        display_name=given.display_name,
        state=MUNICIPALITY_STATES.get(given.state),
    )


# -- vendors and their systems -----------------------------------------------------------------


def vendor_to_pb(v: Vendor) -> pb.Vendor:
    return pb.Vendor(
        name=v.name,
        organization_number=v.organization_number,
        display_name=v.display_name,
        create_time=timestamp(v.create_time),
        revision=v.revision,
    )


def vendor_from_pb(v: pb.Vendor) -> Vendor:
    return Vendor(v.organization_number, v.display_name)


def vendor_system_to_pb(s: VendorSystem) -> pb.VendorSystem:
    return pb.VendorSystem(
        name=s.name,
        display_name=s.display_name,
        client_ids=list(s.client_ids),
        create_time=timestamp(s.create_time),
        update_time=timestamp(s.update_time),
        revision=s.revision,
    )


def vendor_system_from_pb(request: pb.CreateVendorSystemRequest) -> VendorSystem:
    return VendorSystem(
        organization_number(names.VENDOR, request.parent),
        request.system_id,
        request.vendor_system.display_name,
        tuple(request.vendor_system.client_ids),
    )


def vendor_system_update(request: pb.UpdateVendorSystemRequest) -> VendorSystemUpdate:
    given = request.vendor_system
    return VendorSystemUpdate(
        frozenset(request.update_mask.paths),
        display_name=given.display_name,
        client_ids=tuple(given.client_ids),
    )


# -- EPJ endpoints -----------------------------------------------------------------------------


def epj_endpoint_to_pb(e: EpjEndpoint) -> pb.EpjEndpoint:
    return pb.EpjEndpoint(
        name=e.name,
        adapter=ADAPTER_PB[e.adapter],
        base_url=e.base_url,
        delivery_mode=DELIVERY_MODE_PB[e.delivery_mode],
        credentials_secret=e.credentials_secret,
        request_timeout=duration(e.request_timeout_seconds),
        connect_timeout=duration(e.connect_timeout_seconds),
        update_time=timestamp(e.update_time),
        revision=e.revision,
    )


def _timeouts(e: pb.EpjEndpoint) -> tuple[float | None, float | None]:
    request = seconds(e.request_timeout) if e.HasField("request_timeout") else None
    connect = seconds(e.connect_timeout) if e.HasField("connect_timeout") else None
    return request, connect


def epj_endpoint_from_pb(request: pb.CreateEpjEndpointRequest) -> EpjEndpoint:
    e = request.epj_endpoint
    request_timeout, connect_timeout = _timeouts(e)
    return EpjEndpoint(
        municipality=organization_number(names.MUNICIPALITY, request.parent),
        adapter=ADAPTERS[e.adapter],
        base_url=e.base_url,
        delivery_mode=DELIVERY_MODES[e.delivery_mode],
        credentials_secret=e.credentials_secret,
        request_timeout_seconds=request_timeout,
        connect_timeout_seconds=connect_timeout,
    )


def municipality_state_to_pb(state: MunicipalityState | None) -> pb.MunicipalityState.ValueType:
    return MUNICIPALITY_STATE_PB[state] if state else pb.MUNICIPALITY_STATE_UNSPECIFIED


def epj_endpoint_update(request: pb.UpdateEpjEndpointRequest) -> EpjEndpointUpdate:
    given = request.epj_endpoint
    request_timeout, connect_timeout = _timeouts(given)
    return EpjEndpointUpdate(
        frozenset(request.update_mask.paths),
        adapter=ADAPTERS.get(given.adapter),
        base_url=given.base_url,
        delivery_mode=DELIVERY_MODES.get(given.delivery_mode),
        credentials_secret=given.credentials_secret,
        request_timeout_seconds=request_timeout,
        connect_timeout_seconds=connect_timeout,
    )


# -- agreements --------------------------------------------------------------------------------


def agreement_to_pb(a: Agreement) -> pb.Agreement:
    validity = common_pb2.Period(
        start_time=timestamp(a.valid_from), end_time=timestamp(a.valid_until)
    )
    return pb.Agreement(
        name=a.name,
        vendor_system=a.vendor_system,
        service_codes=[SERVICE_CODE_PB[c] for c in a.service_codes],
        actions=[ACTION_PB[x] for x in a.actions],
        validity=validity,
        state=AGREEMENT_STATE_PB[a.state],
        create_time=timestamp(a.create_time),
        update_time=timestamp(a.update_time),
        revision=a.revision,
    )


def _validity(a: pb.Agreement) -> tuple[datetime | None, datetime | None]:
    period = a.validity
    start = when(period.start_time) if period.HasField("start_time") else None
    end = when(period.end_time) if period.HasField("end_time") else None
    return start, end


def agreement_from_pb(request: pb.CreateAgreementRequest) -> Agreement:
    """The agreement to create; its id is empty when the request gives none."""
    a = request.agreement
    start, end = _validity(a)
    return Agreement(
        municipality=organization_number(names.MUNICIPALITY, request.parent),
        agreement_id=request.agreement_id,
        vendor_system=a.vendor_system,
        service_codes=tuple(SERVICE_CODES[c] for c in a.service_codes),
        actions=tuple(ACTIONS[x] for x in a.actions),
        valid_from=start,
        valid_until=end,
        state=AGREEMENT_STATES.get(a.state, AgreementState.ACTIVE),
    )


def agreement_update(request: pb.UpdateAgreementRequest) -> AgreementUpdate:
    given = request.agreement
    start, end = _validity(given)
    return AgreementUpdate(
        frozenset(request.update_mask.paths),
        service_codes=tuple(SERVICE_CODES[c] for c in given.service_codes),
        actions=tuple(ACTIONS[x] for x in given.actions),
        valid_from=start,
        valid_until=end,
        state=AGREEMENT_STATES.get(given.state),
    )


# -- partner profiles --------------------------------------------------------------------------


def partner_profile_to_pb(p: PartnerProfile) -> pb.PartnerProfile:
    return pb.PartnerProfile(
        name=p.name,
        mappings=[
            pb.ServiceTypeMapping(
                service_code=SERVICE_CODE_PB[code], service_type_patterns=list(pats)
            )
            for code, pats in p.mappings
        ],
        update_time=timestamp(p.update_time),
        revision=p.revision,
    )


def partner_profile_from_pb(p: pb.PartnerProfile) -> PartnerProfile:
    return PartnerProfile(
        organization_number(names.PARTNER_PROFILE, p.name),
        tuple((SERVICE_CODES[m.service_code], tuple(m.service_type_patterns)) for m in p.mappings),
    )


# -- decisions and changes ---------------------------------------------------------------------


def decision_to_pb(d: Decision) -> pb.AccessDecision:
    return pb.AccessDecision(
        allowed=d.allowed,
        denial_reason=(
            DENIAL_PB[d.denial_reason] if d.denial_reason else pb.DENIAL_REASON_UNSPECIFIED
        ),
        agreement=d.agreement,
        vendor_system=d.vendor_system,
        vendor_organization_number=d.vendor_organization_number,
        municipality_number=d.municipality_number,
        service_type_patterns=list(d.service_type_patterns),
        revision=d.revision,
    )


def change_to_pb(c: Change) -> pb.Change:
    change = pb.Change(
        revision=c.revision,
        commit_time=timestamp(c.commit_time),
        type=CHANGE_TYPE_PB[c.type],
        resource_name=c.resource_name,
    )
    resource: Resource | None = c.resource
    if isinstance(resource, Municipality):
        change.municipality.CopyFrom(municipality_to_pb(resource))
    elif isinstance(resource, Vendor):
        change.vendor.CopyFrom(vendor_to_pb(resource))
    elif isinstance(resource, VendorSystem):
        change.vendor_system.CopyFrom(vendor_system_to_pb(resource))
    elif isinstance(resource, EpjEndpoint):
        change.epj_endpoint.CopyFrom(epj_endpoint_to_pb(resource))
    elif isinstance(resource, Agreement):
        change.agreement.CopyFrom(agreement_to_pb(resource))
    elif isinstance(resource, PartnerProfile):
        change.partner_profile.CopyFrom(partner_profile_to_pb(resource))
    return change
