"""gRPC servicer of vkp.ingest.v1.IngestService: thin, proto <-> store.

An event passes, in order: the contract's field rules, the domain rules (checks.py), and the
registry's access decision for the caller, this municipality, this service and `journal`. The
accepted ones are committed together with their audit record; each answer is a receipt (new, or
the original one for a repeat) or the reason the event was refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
from opentelemetry import trace

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2, event_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp.journaling.v1 import journaling_pb2, journaling_pb2_grpc
from vkp.registry.v1 import registry_pb2
from vkp_ingest.checks import check_event
from vkp_ingest.settings import IngestSettings
from vkp_ingest.store import Incoming, IngestStore, Registered, Request
from vkp_lib import denials
from vkp_lib.audit_client import AuditClient, new_record_id
from vkp_lib.auth import Principal, current_principal
from vkp_lib.errors import AlreadyExists, InvalidArgument, NotFound, VkpError
from vkp_lib.grouping import GroupCommit
from vkp_lib.logging import get_logger
from vkp_lib.registry_client import DecisionClient
from vkp_lib.rpc import Context
from vkp_lib.status import grpc_code
from vkp_lib.validation import field_violations, reason_of

log = get_logger("vkp.ingest")
SUBMIT = "/vkp.ingest.v1.IngestService/SubmitEvents"


def content_hash(event: event_pb2.Event) -> str:
    """The canonical hash of an event's content: its deterministic serialization."""
    return hashlib.sha256(event.SerializeToString(deterministic=True)).hexdigest()


def _traceparent() -> str:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _item_error(error: VkpError) -> common_pb2.ItemError:
    return common_pb2.ItemError(
        code=grpc_code(error.kind).value[0],
        reason=error.reason,
        message=error.message,
        field_violations=[
            common_pb2.FieldViolation(field=v.field, description=v.description, reason=v.reason)
            for v in error.violations
        ],
    )


def _audit(
    principal: Principal,
    vendor_system: str,
    municipality: str,
    events: Sequence[event_pb2.Event],
    outcome: audit_pb2.AuditOutcome.ValueType,
    reason: str,
    now: datetime,
) -> audit_pb2.AuditRecord:
    record = audit_pb2.AuditRecord(
        record_id=new_record_id(),
        actor=audit_pb2.Actor(
            client_id=principal.client_id,
            organization_number=principal.organization_number,
            vendor_system=vendor_system,
        ),
        municipality=municipality,
        patients=[common_pb2.NationalId(value=e.patient.value) for e in events],
        action=audit_pb2.AUDIT_ACTION_CREATE,
        resource=SUBMIT,
        purpose=audit_pb2.Purpose(service_code=events[0].service_code),
        outcome=outcome,
        outcome_reason=reason,
        trace_id=_traceparent()[3:35],
    )
    record.occurred_time.FromDatetime(now)
    return record


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self,
        store: IngestStore,
        registrar: Callable[[], GroupCommit[Request, list[Registered]]],
        access: Callable[[], DecisionClient],
        audit: Callable[[], AuditClient],
        journaling: Callable[[], journaling_pb2_grpc.JournalingServiceAsyncStub],
        settings: IngestSettings,
        *,
        allow_synthetic: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._registrar = registrar
        self._access = access
        self._audit = audit
        self._journaling = journaling
        self.settings = settings
        self._allow_synthetic = allow_synthetic
        self._clock = clock

    async def SubmitEvent(
        self, request: pb.SubmitEventRequest, context: Context
    ) -> pb.SubmitEventResponse:
        (result,) = await self._submit([request.event], prefix="event.")
        if isinstance(result, VkpError):
            raise result
        return pb.SubmitEventResponse(receipt=result)

    async def SubmitEvents(
        self, request: pb.SubmitEventsRequest, context: Context
    ) -> pb.SubmitEventsResponse:
        results = await self._submit(list(request.events), prefix="events[{}].")
        return pb.SubmitEventsResponse(
            results=[
                pb.EventResult(event_id=event.event_id, error=_item_error(result))
                if isinstance(result, VkpError)
                else pb.EventResult(event_id=event.event_id, receipt=result)
                for event, result in zip(request.events, results, strict=True)
            ]
        )

    async def _check(self, event: event_pb2.Event, prefix: str, now: datetime) -> None:
        violations = [
            replace(v, field=f"{prefix}{v.field}".rstrip(".")) for v in field_violations(event)
        ]
        if violations:
            raise InvalidArgument(
                reason_of(violations), "the event breaks field rules", violations=violations
            )
        check_event(
            event,
            now,
            allow_synthetic=self._allow_synthetic,
            future_skew=timedelta(seconds=self.settings.future_skew_seconds),
            max_age=timedelta(seconds=self.settings.max_age_seconds),
            prefix=prefix,
        )

    async def _submit(
        self, events: list[event_pb2.Event], *, prefix: str
    ) -> list[pb.EventReceipt | VkpError]:
        principal, now = current_principal(), self._clock()
        results: list[pb.EventReceipt | VkpError | None] = [None] * len(events)
        accepted: list[tuple[int, Incoming]] = []
        systems: dict[str, str] = {}
        denied: list[audit_pb2.AuditRecord] = []
        for index, event in enumerate(events):
            try:
                await self._check(event, prefix.format(index), now)
            except VkpError as error:
                results[index] = error
                continue
            decision = await self._access().check(
                principal.client_id,
                event.municipality,
                event.service_code,
                registry_pb2.ACCESS_ACTION_JOURNAL,
            )
            if not decision.allowed:
                refusal = denials.denied(
                    decision, event.service_code, registry_pb2.ACCESS_ACTION_JOURNAL
                )
                results[index] = refusal
                denied.append(
                    _audit(
                        principal,
                        decision.vendor_system,
                        event.municipality,
                        [event],
                        audit_pb2.AUDIT_OUTCOME_DENIED,
                        refusal.reason,
                        now,
                    )
                )
                continue
            systems[event.municipality] = decision.vendor_system
            accepted.append(
                (
                    index,
                    Incoming(
                        vendor_system=decision.vendor_system,
                        event_id=event.event_id,
                        client_id=principal.client_id,
                        content_hash=content_hash(event),
                        municipality=event.municipality,
                        event=event.SerializeToString(deterministic=True),
                        traceparent=_traceparent(),
                    ),
                )
            )
        if accepted:
            by_municipality: dict[str, list[event_pb2.Event]] = {}
            for index, item in accepted:
                by_municipality.setdefault(item.municipality, []).append(events[index])
            audits = {
                municipality: _audit(
                    principal,
                    systems[municipality],
                    municipality,
                    batch,
                    audit_pb2.AUDIT_OUTCOME_ALLOWED,
                    "",
                    now,
                ).SerializeToString()
                for municipality, batch in by_municipality.items()
            }
            stored = await self._registrar().submit(([item for _, item in accepted], audits))
            for (index, _), registered in zip(accepted, stored, strict=True):
                results[index] = self._receipt(registered)
        if denied:
            try:
                await self._audit().record_many(denied)
            except grpc.aio.AioRpcError as exc:
                log.warning("denial not audited", code=exc.code().name)
        return [r for r in results if r is not None]

    @staticmethod
    def _receipt(registered: Registered) -> pb.EventReceipt | VkpError:
        if registered.reused:
            return AlreadyExists(
                "EVENT_ID_REUSED", "this event id was used before for an event with other content"
            )
        receipt = pb.EventReceipt(
            event_id=registered.event_id,
            name=f"events/{registered.id}",
            state=common_pb2.EVENT_STATE_REGISTERED,
            replayed=registered.replayed,
        )
        receipt.receive_time.FromDatetime(registered.receive_time)
        return receipt

    async def GetEventStatus(
        self, request: pb.GetEventStatusRequest, context: Context
    ) -> pb.GetEventStatusResponse:
        found = await self.store.find(current_principal().client_id, request.event_id)
        if found is None:
            raise NotFound("EVENT_NOT_FOUND", "no event with this id from this vendor system")
        event_id, sent, received = found
        status = pb.EventStatus(
            event_id=request.event_id,
            name=f"events/{event_id}",
            state=common_pb2.EVENT_STATE_REGISTERED,
        )
        status.receive_time.FromDatetime(received)
        status.state_time.FromDatetime(received)
        if sent:
            try:
                entry = (
                    await self._journaling().GetEntry(
                        journaling_pb2.GetEntryRequest(name=f"entries/{event_id}")
                    )
                ).entry
            except grpc.aio.AioRpcError:
                status.state = common_pb2.EVENT_STATE_QUEUED
            else:
                status.state = entry.state
                status.state_time.CopyFrom(entry.update_time)
                status.attempts = entry.attempts
                status.last_error_reason = entry.last_error_reason
                if entry.HasField("next_attempt_time"):
                    status.next_attempt_time.CopyFrom(entry.next_attempt_time)
        return pb.GetEventStatusResponse(status=status)

    async def CheckOpenAlarm(
        self, request: pb.CheckOpenAlarmRequest, context: Context
    ) -> pb.CheckOpenAlarmResponse:
        raise NotImplementedError
