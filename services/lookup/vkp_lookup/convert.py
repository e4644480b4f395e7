"""Proto <-> domain types of the lookup service, and its audit records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time

from google.protobuf.duration_pb2 import Duration

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2
from vkp.lookup.v1 import lookup_pb2 as pb
from vkp_lib.audit_client import audit_record_of
from vkp_lib.auth import Principal
from vkp_lib.national_id import IDENTIFIER_SYSTEMS, NationalIdKind
from vkp_lib.timestamps import timestamp
from vkp_lookup.domain import model
from vkp_lookup.domain.model import Freshness
from vkp_lookup.domain.need import Episode
from vkp_lookup.domain.records import OSLO

_STATUS = {
    "planned": pb.SERVICE_STATUS_PLANNED,
    "waitlist": pb.SERVICE_STATUS_PLANNED,
    "active": pb.SERVICE_STATUS_ACTIVE,
    "onhold": pb.SERVICE_STATUS_ON_HOLD,
    "finished": pb.SERVICE_STATUS_FINISHED,
    "cancelled": pb.SERVICE_STATUS_CANCELLED,
}
_ID_TYPE = {
    IDENTIFIER_SYSTEMS[NationalIdKind.FNR]: common_pb2.NATIONAL_ID_TYPE_FNR,
    IDENTIFIER_SYSTEMS[NationalIdKind.DNR]: common_pb2.NATIONAL_ID_TYPE_DNR,
    IDENTIFIER_SYSTEMS[NationalIdKind.FHN]: common_pb2.NATIONAL_ID_TYPE_FHN,
}
_RULE = {
    model.Rule.SERVICE_NEED: pb.ACCESS_RULE_SERVICE_NEED,
    model.Rule.OPEN_ALARM: pb.ACCESS_RULE_OPEN_ALARM,
    model.Rule.ALARM_GRACE: pb.ACCESS_RULE_ALARM_GRACE,
}
_CRITICAL = {
    model.CriticalKind.ALLERGY: pb.CRITICAL_INFORMATION_KIND_ALLERGY,
    model.CriticalKind.WARNING: pb.CRITICAL_INFORMATION_KIND_WARNING,
}


def freshness_to_pb(freshness: Freshness, now: datetime) -> pb.Freshness:
    age = Duration()
    age.FromTimedelta(freshness.age(now))
    return pb.Freshness(
        stale=freshness.stale, cache_age=age, fetch_time=timestamp(freshness.fetch_time)
    )


def _coding(coding: model.Coding | None) -> common_pb2.Coding | None:
    if coding is None or not coding.code:
        return None
    return common_pb2.Coding(system=coding.system, code=coding.code, display=coding.display)


def _name(name: model.Name) -> pb.PersonName:
    return pb.PersonName(given=name.given, family=name.family, text=name.text)


def patient_to_pb(patient: model.Patient) -> pb.Patient:
    a = patient.address
    return pb.Patient(
        national_id=common_pb2.NationalId(
            value=patient.national_id,
            type=_ID_TYPE.get(patient.national_id_system, common_pb2.NATIONAL_ID_TYPE_UNSPECIFIED),
        ),
        name=_name(patient.name),
        phones=patient.phones,
        address=pb.Address(
            lines=a.lines, postal_code=a.postal_code, city=a.city, access_hint=a.access_hint
        ),
        door_lock_system=patient.door_lock_system,
        zone=patient.zone,
        household=patient.household,
    )


def _period(start: datetime | None, end: datetime | None) -> common_pb2.Period:
    period = common_pb2.Period()
    if start is not None:
        period.start_time.CopyFrom(timestamp(start))
    if end is not None:
        period.end_time.CopyFrom(timestamp(end))
    return period


def _day_start(day: date | None) -> datetime | None:
    """A service's first or last day, from its start in Norwegian time."""
    return datetime.combine(day, time(), OSLO) if day is not None else None


def service_to_pb(episode: Episode) -> pb.PatientService:
    service = pb.PatientService(
        status=_STATUS.get(episode.status, pb.SERVICE_STATUS_UNSPECIFIED),
        period=_period(_day_start(episode.start), _day_start(episode.end)),
        managing_organization=episode.managing_organization,
    )
    coding = _coding(model.Coding(episode.type_system, episode.type_code, episode.type_display))
    if coding is not None:
        service.type.CopyFrom(coding)
    return service


def visit_to_pb(visit: model.Visit) -> pb.Visit:
    return pb.Visit(
        period=_period(visit.start, visit.end), activity=visit.activity, performer=visit.performer
    )


def _critical(info: model.CriticalInformation) -> pb.CriticalInformation:
    found = pb.CriticalInformation(
        kind=_CRITICAL[info.kind], text=info.text, criticality=info.criticality
    )
    coding = _coding(info.code)
    if coding is not None:
        found.code.CopyFrom(coding)
    return found


def alarm_context_to_pb(context: model.AlarmContext) -> pb.AlarmContext:
    answer = pb.AlarmContext(
        patient=patient_to_pb(context.patient),
        next_of_kin=[
            pb.NextOfKin(name=_name(k.name), relationship=k.relationship, phones=k.phones)
            for k in context.next_of_kin
        ],
        critical_information=[_critical(c) for c in context.critical_information],
        visits=[visit_to_pb(v) for v in context.visits],
        services=[service_to_pb(e) for e in context.services],
    )
    gp = context.general_practitioner
    if gp is not None:
        answer.general_practitioner.CopyFrom(
            pb.GeneralPractitioner(
                name=_name(gp.name), organization=gp.organization, phones=gp.phones
            )
        )
    return answer


def basis_to_pb(basis: model.Basis) -> pb.AccessBasis:
    answer = pb.AccessBasis(
        rule=_RULE[basis.rule], episode_id=basis.episode.episode_id, agreement=basis.agreement
    )
    e = basis.episode
    coding = _coding(model.Coding(e.type_system, e.type_code, e.type_display))
    if coding is not None:
        answer.service_type.CopyFrom(coding)
    return answer


def recipient_to_pb(recipient: model.ServiceRecipient) -> pb.ServiceRecipient:
    p = patient_to_pb(recipient.patient)
    return pb.ServiceRecipient(
        national_id=p.national_id,
        name=p.name,
        services=[service_to_pb(e) for e in recipient.services],
    )


def audit_record(
    principal: Principal,
    *,
    vendor_system: str,
    municipality: str,
    patients: Sequence[str],
    action: audit_pb2.AuditAction.ValueType,
    resource: str,
    service_code: common_pb2.ServiceCode.ValueType,
    alarm_id: str,
    outcome: audit_pb2.AuditOutcome.ValueType,
    reason: str,
    basis: str,
    stale: bool,
    now: datetime,
    request_id: str,
    trace_id: str,
) -> audit_pb2.AuditRecord:
    """The audit record of one lookup by `principal`: a refusal with its `reason`, an answer
    with its access `basis` (the rule and what it rested on)."""
    return audit_record_of(
        principal,
        vendor_system=vendor_system,
        now=now,
        municipality=municipality,
        patients=patients,
        action=action,
        resource=resource,
        service_code=service_code,
        alarm_id=alarm_id,
        outcome=outcome,
        outcome_reason=reason,
        access_basis=basis,
        stale_data=stale,
        request_id=request_id,
        trace_id=trace_id,
    )
