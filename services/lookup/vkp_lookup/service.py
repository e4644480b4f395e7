"""The lookup service's use cases.

A lookup of one patient passes, in order: the national id's mod-11 (synthetic ids only where
allowed); the registry's decision for the caller, this municipality, this service and `lookup`
(`DecisionClient`: cached, following the change feed); for `GetAlarmContext`, ingest's state of
that vendor system's alarm for the patient (open, or closed within the grace period); the
patient in the EPJ; the service need (an active EpisodeOfCare of a type the partner profile's
patterns match, domain/need.py); then the data asked for. A listing needs the decision, and
lists only patients with the service need.

Nothing is fetched from the EPJ before the access decision (and, for `GetAlarmContext`, the
alarm's state) allows it, nor the data asked for before the service need is found; reading the
cache is not a fetch. So a lookup reads the patient's cached Patient while it asks for the
decision and the alarm, and then, with one read of the cache, its services and the other kinds
its answer needs: on cache hits, two reads of the cache per lookup, the first beside the checks.
A miss is fetched only once its step is allowed.

Every answer and every refusal past the request's own checks is recorded in the audit log, and
only once the audit service has committed the record does the answer go out: no record, no
answer (UNAVAILABLE AUDIT_UNAVAILABLE instead). One record per lookup: who, which patients,
what, the outcome (for an answer, its access basis: the rule and the EpisodeOfCare that allowed
it; for a refusal, its reason) and whether stale data was served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, TypeVar

import grpc
from opentelemetry import trace

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2
from vkp_lib import paging
from vkp_lib.audit_client import AuditRecorder
from vkp_lib.auth import Principal
from vkp_lib.denials import denied
from vkp_lib.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    VkpError,
)
from vkp_lib.fhir import EpjFailure, EpjTimeout
from vkp_lib.logging import current_request_id, get_logger
from vkp_lib.national_id import (
    IDENTIFIER_SYSTEMS,
    InvalidNationalId,
    NationalIdKind,
    parse_national_id,
)
from vkp_lib.registry_client import Decisions
from vkp_lookup import convert
from vkp_lookup.alarms import AlarmsUnavailable
from vkp_lookup.domain import records
from vkp_lookup.domain.model import (
    AlarmContext,
    Answer,
    Basis,
    Freshness,
    GeneralPractitioner,
    Page,
    Patient,
    Rule,
    ServiceRecipient,
    Visit,
)
from vkp_lookup.domain.need import AlarmState, Episode, alarm_window_open, service_need
from vkp_lookup.domain.reasons import Reason
from vkp_lookup.settings import LookupSettings
from vkp_lookup.store import Read, Wanted

log = get_logger("vkp.lookup")
LOOKUP = registry_pb2.ACCESS_ACTION_LOOKUP
DEFAULT_PAGE_SIZE = 50
SERVICE = "/vkp.lookup.v1.LookupService/"
T = TypeVar("T")


class Records(Protocol):
    """The EPJ's data, one read per kind (vkp_lookup.store.PatientRecords)."""

    async def patient(self, municipality: str, system: str, national_id: str) -> Read: ...
    async def episodes(self, municipality: str, patient_id: str) -> Read: ...
    async def visit_plans(self, municipality: str, patient_id: str) -> Read: ...
    async def next_of_kin(self, municipality: str, patient_id: str) -> Read: ...
    async def critical(self, municipality: str, patient_id: str) -> Read: ...
    async def practitioner(self, municipality: str, practitioner_id: str) -> Read: ...
    async def active_episodes(self, municipality: str) -> Read: ...
    async def patients(self, municipality: str, patient_ids: Sequence[str]) -> Read: ...
    async def cached(self, municipality: str, wanted: Sequence[Wanted]) -> dict[Wanted, Read]: ...


class Alarms(Protocol):
    """Ingest's open-alarm query (vkp_lookup.alarms.AlarmClient)."""

    async def state(
        self, *, vendor_system: str, alarm_id: str, patient: str, municipality: str
    ) -> AlarmState | None: ...


@dataclass(frozen=True)
class Call:
    """Who asks what, for the decision and the audit record."""

    principal: Principal
    municipality: str
    service_code: common_pb2.ServiceCode.ValueType
    method: str
    alarm_id: str = ""


@dataclass(frozen=True)
class _Found:
    """The patient, the decision and the basis of a lookup allowed so far."""

    patient: Patient
    decision: registry_pb2.AccessDecision
    basis: Basis
    episodes: tuple[Episode, ...]
    reads: tuple[Freshness, ...]
    #: The fresh cached reads of the kinds the answer needs, read with the episodes.
    cached: dict[Wanted, Read]


def _oslo_today(now: datetime) -> date:
    return now.astimezone(records.OSLO).date()


class LookupService:
    def __init__(
        self,
        settings: LookupSettings,
        *,
        records: Records,
        decisions: Decisions,
        alarms: Alarms,
        audit: AuditRecorder,
        allow_synthetic: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._grace = timedelta(seconds=settings.alarm_grace_seconds)
        self._records = records
        self._decisions = decisions
        self._alarms = alarms
        self._audit = audit
        self._allow_synthetic = allow_synthetic
        self._clock = clock

    def alarm_window_open(self, alarm: AlarmState | None) -> bool:
        """Whether responder data may be given for this alarm now."""
        return alarm_window_open(alarm, self._clock(), self._grace)

    # -- the RPCs ----------------------------------------------------------------------------

    async def get_patient(self, call: Call, national_id: str) -> Answer[Patient]:
        async def produce(found: _Found) -> tuple[Patient, list[Freshness]]:
            return found.patient, []

        return await self._lookup(call, national_id, produce)

    async def get_services(self, call: Call, national_id: str) -> Answer[tuple[Episode, ...]]:
        async def produce(found: _Found) -> tuple[tuple[Episode, ...], list[Freshness]]:
            return found.episodes, []

        return await self._lookup(call, national_id, produce)

    async def get_visit_plan(
        self, call: Call, national_id: str, day: str
    ) -> Answer[tuple[Visit, ...]]:
        try:
            wanted = date.fromisoformat(day) if day else None
        except ValueError:
            raise InvalidArgument(
                Reason.INVALID_FORMAT, "date is not a day of the calendar"
            ) from None

        def needed(patient: Patient) -> list[Wanted]:
            return [("visit_plans", (patient.id,))]

        async def produce(found: _Found) -> tuple[tuple[Visit, ...], list[Freshness]]:
            patient_id = found.patient.id
            plans = found.cached.get(
                ("visit_plans", (patient_id,))
            ) or await self._records.visit_plans(call.municipality, patient_id)
            on = wanted or _oslo_today(self._clock())
            return tuple(records.visits(plans.resources, on)), [plans.freshness]

        return await self._lookup(call, national_id, produce, needed)

    async def get_alarm_context(self, call: Call, national_id: str) -> Answer[AlarmContext]:
        def needed(patient: Patient) -> list[Wanted]:
            kinds: list[Wanted] = [
                (kind, (patient.id,)) for kind in ("next_of_kin", "visit_plans", "critical")
            ]
            if patient.general_practitioner_id:
                kinds.append(("practitioner", (patient.general_practitioner_id,)))
            return kinds

        async def produce(found: _Found) -> tuple[AlarmContext, list[Freshness]]:
            municipality, patient = call.municipality, found.patient

            async def read(kind: str, fetch: Callable[[str, str], Awaitable[Read]]) -> Read:
                """The patient's `kind`, cached with the services or else read now."""
                hit = found.cached.get((kind, (patient.id,)))
                return hit if hit is not None else await fetch(municipality, patient.id)

            gp_id = patient.general_practitioner_id
            gp_hit = found.cached.get(("practitioner", (gp_id,)))
            kin, plans, critical, gp = await asyncio.gather(
                read("next_of_kin", self._records.next_of_kin),
                read("visit_plans", self._records.visit_plans),
                read("critical", self._records.critical),
                self._practitioner(municipality, gp_id, gp_hit),
            )
            today = _oslo_today(self._clock())
            reads = [kin.freshness, plans.freshness, critical.freshness]
            practitioner: GeneralPractitioner | None = None
            if gp is not None:
                reads.append(gp.freshness)
                practitioner = next((records.general_practitioner(r) for r in gp.resources), None)
            context = AlarmContext(
                patient=patient,
                next_of_kin=tuple(records.next_of_kin(r) for r in kin.resources),
                general_practitioner=practitioner,
                critical_information=tuple(records.critical_information(critical.resources)),
                visits=tuple(records.visits(plans.resources, today)),
                services=tuple(e for e in found.episodes if e.active_on(today)),
            )
            return context, reads

        return await self._lookup(call, national_id, produce, needed)

    async def list_service_recipients(self, call: Call, page_size: int, page_token: str) -> Page:
        size = page_size or DEFAULT_PAGE_SIZE
        filters = f"{call.municipality}/{call.service_code}"
        after = paging.position(page_token, filters, lambda p: p[0])
        decision: registry_pb2.AccessDecision | None = None
        try:
            decision = await self._decide(call)
            _require(decision, call)
            today = _oslo_today(self._clock())
            active = await self._records.active_episodes(call.municipality)
            by_patient: dict[str, list[Episode]] = {}
            for resource in active.resources:
                episode = records.episode(resource)
                patient_id = records.episode_patient(resource)
                if patient_id and service_need([episode], decision.service_type_patterns, today):
                    by_patient.setdefault(patient_id, []).append(episode)
            ids = sorted(i for i in by_patient if after is None or i > after)
            chosen = ids[:size]
            reads = [active.freshness]
            recipients: list[ServiceRecipient] = []
            if chosen:
                found = await self._records.patients(call.municipality, chosen)
                reads.append(found.freshness)
                patients = {
                    p.id: p
                    for p in (records.patient(r, _SYSTEMS) for r in found.resources)
                    if p.national_id
                }
                recipients = [
                    ServiceRecipient(patients[i], tuple(by_patient[i]))
                    for i in chosen
                    if i in patients
                ]
        except (VkpError, EpjFailure) as error:
            raise await self._refused(call, [], decision, error) from None
        freshness = Freshness.of(reads)
        token = paging.page_token([chosen[-1]], filters) if len(ids) > size else ""
        await self._record(
            call,
            [r.patient.national_id for r in recipients],
            decision,
            outcome=audit_pb2.AUDIT_OUTCOME_ALLOWED,
            basis=Rule.SERVICE_NEED.value,
            stale=freshness.stale,
        )
        return Page(tuple(recipients), token, freshness)

    # -- the steps ---------------------------------------------------------------------------

    async def _lookup(
        self,
        call: Call,
        national_id: str,
        produce: Callable[[_Found], Awaitable[tuple[T, list[Freshness]]]],
        needed: Callable[[Patient], list[Wanted]] = lambda _: [],
    ) -> Answer[T]:
        """The checks in order, then `produce`'s answer, recorded. The patient's cached Patient
        is read beside the checks (a read of the cache, never a fetch); the kinds `needed`
        names for the patient are read from the cache with its services."""
        kind = self._national_id(national_id)
        system = IDENTIFIER_SYSTEMS.get(kind, IDENTIFIER_SYSTEMS[NationalIdKind.FNR])
        patient_key: Wanted = ("patient", (system, national_id))
        decision: registry_pb2.AccessDecision | None = None
        peek = asyncio.create_task(self._records.cached(call.municipality, [patient_key]))
        try:
            try:
                decision = await self._decide(call)
                _require(decision, call)
                rule = await self._alarm_rule(call, decision, national_id)
                cached = await peek
            finally:
                peek.cancel()  # a check refused: the cache's answer is not wanted
            found = await self._find(
                call, decision, rule, system, national_id, cached.get(patient_key), needed
            )
            value, reads = await produce(found)
        except (VkpError, EpjFailure) as error:
            raise await self._refused(call, [national_id], decision, error) from None
        freshness = Freshness.of([*found.reads, *reads])
        await self._record(
            call,
            [national_id],
            decision,
            outcome=audit_pb2.AUDIT_OUTCOME_ALLOWED,
            basis=found.basis.audit_text,
            stale=freshness.stale,
        )
        return Answer(value, freshness, found.basis)

    def _national_id(self, value: str) -> NationalIdKind:
        try:
            return parse_national_id(value, allow_synthetic=self._allow_synthetic).kind
        except InvalidNationalId as exc:
            raise InvalidArgument(
                Reason.INVALID_NATIONAL_ID, f"patient is not a valid national id: {exc.reason}"
            ) from None

    async def _decide(self, call: Call) -> registry_pb2.AccessDecision:
        return await self._decisions.check(
            call.principal.client_id, call.municipality, call.service_code, LOOKUP
        )

    async def _alarm_rule(
        self, call: Call, decision: registry_pb2.AccessDecision, national_id: str
    ) -> Rule:
        if not call.alarm_id:
            return Rule.SERVICE_NEED
        try:
            state = await self._alarms.state(
                vendor_system=decision.vendor_system,
                alarm_id=call.alarm_id,
                patient=national_id,
                municipality=call.municipality,
            )
        except AlarmsUnavailable:
            raise Unavailable(
                Reason.INGEST_UNAVAILABLE, "whether the alarm is open cannot be asked now"
            ) from None
        if state is not None and state.open:
            return Rule.OPEN_ALARM
        if self.alarm_window_open(state):
            return Rule.ALARM_GRACE
        raise PermissionDenied(
            Reason.NO_OPEN_ALARM,
            "this vendor system has no open alarm with this id for the patient"
            " (or it closed longer ago than the grace period)",
        )

    async def _find(
        self,
        call: Call,
        decision: registry_pb2.AccessDecision,
        rule: Rule,
        system: str,
        national_id: str,
        cached_patient: Read | None,
        needed: Callable[[Patient], list[Wanted]],
    ) -> _Found:
        read = cached_patient or await self._records.patient(call.municipality, system, national_id)
        if not read.resources:
            raise NotFound(
                Reason.PATIENT_NOT_FOUND,
                "the municipality's EPJ has no patient with this national id",
            )
        patient = records.patient(read.resources[0], [system])
        more = needed(patient)
        episodes_key: Wanted = ("episodes", (patient.id,))
        cached = (
            await self._records.cached(call.municipality, [episodes_key, *more]) if more else {}
        )
        episodes_read = cached.get(episodes_key) or await self._records.episodes(
            call.municipality, patient.id
        )
        episodes = tuple(records.episode(r) for r in episodes_read.resources)
        need = service_need(episodes, decision.service_type_patterns, _oslo_today(self._clock()))
        if need is None:
            raise PermissionDenied(
                Reason.MISSING_ACTIVE_SERVICE,
                "the patient has no active service of a type the municipality maps to "
                "this service code",
            )
        return _Found(
            patient=patient,
            decision=decision,
            basis=Basis(rule, need, decision.agreement),
            episodes=episodes,
            reads=(read.freshness, episodes_read.freshness),
            cached=cached,
        )

    async def _practitioner(
        self, municipality: str, practitioner_id: str, cached: Read | None
    ) -> Read | None:
        if not practitioner_id:
            return None
        return cached or await self._records.practitioner(municipality, practitioner_id)

    # -- the audit record --------------------------------------------------------------------

    async def _refused(
        self,
        call: Call,
        patients: Sequence[str],
        decision: registry_pb2.AccessDecision | None,
        error: VkpError | EpjFailure,
    ) -> VkpError:
        """The error a refused or failed lookup answers with, once its record is committed."""
        if isinstance(error, EpjTimeout):
            error = DeadlineExceeded(Reason.EPJ_TIMEOUT, "the EPJ did not answer in time")
        elif isinstance(error, EpjFailure):
            log.warning("EPJ read failed", error=type(error).__name__)
            error = Unavailable(Reason.EPJ_UNAVAILABLE, "the EPJ cannot be read now")
        outcome = (
            audit_pb2.AUDIT_OUTCOME_DENIED
            if isinstance(error, PermissionDenied)
            else audit_pb2.AUDIT_OUTCOME_FAILED
        )
        await self._record(call, patients, decision, outcome=outcome, reason=error.reason)
        return error

    async def _record(
        self,
        call: Call,
        patients: Sequence[str],
        decision: registry_pb2.AccessDecision | None,
        *,
        outcome: audit_pb2.AuditOutcome.ValueType,
        reason: str = "",
        basis: str = "",
        stale: bool = False,
    ) -> None:
        """Records the lookup (a refusal with its `reason`, an answer with its access `basis`),
        returning once the audit service has committed it."""
        record = convert.audit_record(
            call.principal,
            vendor_system=decision.vendor_system if decision is not None else "",
            municipality=call.municipality,
            patients=patients,
            action=(
                audit_pb2.AUDIT_ACTION_QUERY
                if call.method == "ListServiceRecipients"
                else audit_pb2.AUDIT_ACTION_READ
            ),
            resource=SERVICE + call.method,
            service_code=call.service_code,
            alarm_id=call.alarm_id,
            outcome=outcome,
            reason=reason,
            basis=basis,
            stale=stale,
            now=self._clock(),
            request_id=current_request_id(),
            trace_id=_trace_id(),
        )
        try:
            await self._audit.record(record)
        except (grpc.aio.AioRpcError, RuntimeError) as exc:
            code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "CLOSED"
            log.warning("lookup not audited, so not answered", code=code)
            raise Unavailable(
                Reason.AUDIT_UNAVAILABLE,
                "the lookup could not be recorded in the audit log, so it is not answered",
            ) from None


def _require(decision: registry_pb2.AccessDecision, call: Call) -> None:
    """Raises the registry's denial, if it is one."""
    if not decision.allowed:
        raise denied(decision, call.service_code, LOOKUP)


_SYSTEMS = (
    IDENTIFIER_SYSTEMS[NationalIdKind.FNR],
    IDENTIFIER_SYSTEMS[NationalIdKind.DNR],
    IDENTIFIER_SYSTEMS[NationalIdKind.FHN],
)


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""
