"""The use cases of ingest: SubmitEvent(s), GetEventStatus, and CheckOpenAlarm.

An event passes, in order: the contract's field rules (a batch's checked here, event by event, so
one bad event of a batch refuses only itself; a single event's by the runner, with its request's,
before the servicer runs), the domain rules (domain/checks.py), and the registry's
access decision for the caller, this municipality, this service and `journal`. A denial is
refused with the registry's reason and audited at once (best effort; one DENIED record per
event). The accepted events are registered in one group commit with one ALLOWED audit record per
municipality (through the audit outbox); each answer is the registration (new, or the original
one for a repeat) or the reason the event was refused. An accepted alarm step carries its facts
into the registration, which keeps its alarm's state (domain/alarm.py) when the step is new.

CheckOpenAlarm (internal: lookup asks it) answers from that state, and only about the patient
and municipality asked: another patient's alarm under the same id is as unknown as no alarm.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

import grpc
from opentelemetry import propagate, trace

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import event_pb2
from vkp.journaling.v1 import journaling_pb2 as jpb
from vkp.registry.v1 import registry_pb2
from vkp_ingest import convert
from vkp_ingest.domain.alarm import Alarm, seen_by
from vkp_ingest.domain.checks import EventRules, check_event
from vkp_ingest.domain.model import (
    Incoming,
    Registered,
    Registration,
    StoredEvent,
    content_hash,
)
from vkp_ingest.domain.reasons import Reason
from vkp_lib.audit_client import AuditBatchRecorder
from vkp_lib.auth import Principal
from vkp_lib.denials import denied
from vkp_lib.errors import AlreadyExists, InvalidArgument, NotFound, VkpError
from vkp_lib.logging import get_logger
from vkp_lib.names import ENTRY
from vkp_lib.registry_client import Decisions
from vkp_lib.validation import field_violations, reason_of

log = get_logger("vkp.ingest")
JOURNAL = registry_pb2.ACCESS_ACTION_JOURNAL


class Registrar(Protocol):
    """Registers a request's accepted events (ingest's group commit over its store)."""

    async def submit(self, request: Registration) -> list[Registered]: ...


class EventFinder(Protocol):
    async def find(self, client_id: str, event_id: str) -> StoredEvent | None: ...


class AlarmFinder(Protocol):
    async def find_alarm(self, vendor_system: str, alarm_id: str) -> Alarm | None: ...


class Journaling(Protocol):
    """Journaling's GetEntry (its stub)."""

    @property
    def GetEntry(
        self,
    ) -> Callable[[jpb.GetEntryRequest], Awaitable[jpb.GetEntryResponse]]: ...


def _trace_context() -> tuple[str, str]:
    """The current call's W3C `traceparent` header (carried with its events to journaling) and
    trace id (in its audit records); both empty outside a trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:  # no trace to carry (tracing off and no caller's context)
        return "", ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", ""), trace.format_trace_id(context.trace_id)


class IngestService:
    def __init__(
        self,
        *,
        registrar: Registrar,
        events: EventFinder,
        alarms: AlarmFinder,
        decisions: Decisions,
        audit: AuditBatchRecorder,
        journaling: Journaling,
        rules: EventRules,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._registrar = registrar
        self._events = events
        self._alarms = alarms
        self._decisions = decisions
        self._audit = audit
        self._journaling = journaling
        self._rules = rules
        self._clock = clock

    async def submit_event(
        self, principal: Principal, event: event_pb2.Event, *, rules_checked: bool = False
    ) -> Registered:
        """One event: its registration, or the reason it was refused, raised. `rules_checked`:
        the event's field rules have been enforced already (the runner checks a SubmitEvent
        request's, the event's among them, before the servicer runs), so they are not again."""
        (outcome,) = await self._submit(
            principal, [event], prefix="event.", rules_checked=rules_checked
        )
        if isinstance(outcome, VkpError):
            raise outcome
        return outcome

    async def submit_events(
        self, principal: Principal, events: Sequence[event_pb2.Event]
    ) -> list[Registered | VkpError]:
        """Several events: one outcome each, in order."""
        return await self._submit(principal, events, prefix="events[{}].", rules_checked=False)

    def _check(
        self, event: event_pb2.Event, prefix: str, now: datetime, *, rules_checked: bool
    ) -> None:
        violations = (
            []
            if rules_checked
            else [
                replace(v, field=f"{prefix}{v.field}".rstrip(".")) for v in field_violations(event)
            ]
        )
        if violations:
            raise InvalidArgument(
                reason_of(violations), "the event breaks field rules", violations=violations
            )
        check_event(convert.event_facts(event), now, self._rules, prefix=prefix)

    async def _submit(
        self,
        principal: Principal,
        events: Sequence[event_pb2.Event],
        *,
        prefix: str,
        rules_checked: bool,
    ) -> list[Registered | VkpError]:
        now = self._clock()
        traceparent, trace_id = _trace_context()
        outcomes: list[Registered | VkpError | None] = [None] * len(events)
        accepted: list[tuple[int, Incoming]] = []
        systems: dict[str, str] = {}  # the vendor system, per municipality with accepted events
        refusals: list[audit_pb2.AuditRecord] = []  # the denials' audit records
        for index, event in enumerate(events):
            try:
                self._check(event, prefix.format(index), now, rules_checked=rules_checked)
            except VkpError as error:
                outcomes[index] = error
                continue
            decision = await self._decisions.check(
                principal.client_id, event.municipality, event.service_code, JOURNAL
            )
            if not decision.allowed:
                refusal = denied(decision, event.service_code, JOURNAL)
                outcomes[index] = refusal
                refusals.append(
                    convert.audit_record(
                        principal,
                        vendor_system=decision.vendor_system,
                        municipality=event.municipality,
                        events=[event],
                        allowed=False,
                        reason=refusal.reason,
                        now=now,
                        trace_id=trace_id,
                    )
                )
                continue
            systems[event.municipality] = decision.vendor_system
            serialized = event.SerializeToString(deterministic=True)
            accepted.append(
                (
                    index,
                    Incoming(
                        vendor_system=decision.vendor_system,
                        event_id=event.event_id,
                        client_id=principal.client_id,
                        content_hash=content_hash(serialized),
                        municipality=event.municipality,
                        event=serialized,
                        traceparent=traceparent,
                        alarm=convert.alarm_step(event, decision.vendor_system),
                    ),
                )
            )
        if accepted:
            by_municipality: dict[str, list[event_pb2.Event]] = {}
            for index, incoming in accepted:
                by_municipality.setdefault(incoming.municipality, []).append(events[index])
            audits = {
                municipality: convert.audit_record(
                    principal,
                    vendor_system=systems[municipality],
                    municipality=municipality,
                    events=batch,
                    allowed=True,
                    reason="",
                    now=now,
                    trace_id=trace_id,
                ).SerializeToString()
                for municipality, batch in by_municipality.items()
            }
            registered = await self._registrar.submit(
                Registration([incoming for _, incoming in accepted], audits)
            )
            for (index, _), stored in zip(accepted, registered, strict=True):
                outcomes[index] = _reused() if stored.reused else stored
        if refusals:
            try:
                await self._audit.record_many(refusals)
            except grpc.aio.AioRpcError as exc:
                log.warning("denial not audited", code=exc.code().name)
        return [outcome for outcome in outcomes if outcome is not None]

    async def event_status(
        self, client_id: str, event_id: str
    ) -> tuple[StoredEvent, jpb.Entry | None]:
        """An event of the caller's vendor system, and journaling's entry of it once it has been
        handed over (None before, and while journaling cannot be asked)."""
        stored = await self._events.find(client_id, event_id)
        if stored is None:
            raise NotFound(Reason.EVENT_NOT_FOUND, "no event with this id from this vendor system")
        if not stored.sent:
            return stored, None
        request = jpb.GetEntryRequest(name=ENTRY.format(entry_id=stored.id))
        try:
            return stored, (await self._journaling.GetEntry(request)).entry
        except grpc.aio.AioRpcError:
            return stored, None

    async def check_open_alarm(
        self, vendor_system: str, alarm_id: str, municipality: str, patient: str
    ) -> Alarm | None:
        """A vendor system's alarm as its steps have left it (open while no step closed it), when
        it is this patient's of this municipality; None when the hub has seen no step of it for
        them, whether it knows none or another patient's."""
        alarm = await self._alarms.find_alarm(vendor_system, alarm_id)
        return seen_by(alarm, municipality, patient)


def _reused() -> AlreadyExists:
    return AlreadyExists(
        Reason.EVENT_ID_REUSED, "this event id was used before for an event with other content"
    )
