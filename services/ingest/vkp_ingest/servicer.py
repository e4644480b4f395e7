"""gRPC servicer of vkp.ingest.v1.IngestService: the request to the use case of service.py, its
outcome back to the response (convert.py); nothing else."""

from __future__ import annotations

from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp_ingest import convert
from vkp_ingest.service import IngestService
from vkp_lib.auth import current_principal
from vkp_lib.rpc import Context


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, service: IngestService) -> None:
        self._service = service

    async def SubmitEvent(
        self, request: pb.SubmitEventRequest, context: Context
    ) -> pb.SubmitEventResponse:
        # The runner has enforced the request's field rules, the event's among them.
        registered = await self._service.submit_event(
            current_principal(), request.event, rules_checked=True
        )
        return pb.SubmitEventResponse(receipt=convert.receipt(registered))

    async def SubmitEvents(
        self, request: pb.SubmitEventsRequest, context: Context
    ) -> pb.SubmitEventsResponse:
        outcomes = await self._service.submit_events(current_principal(), request.events)
        return pb.SubmitEventsResponse(
            results=[
                convert.event_result(event.event_id, outcome)
                for event, outcome in zip(request.events, outcomes, strict=True)
            ]
        )

    async def GetEventStatus(
        self, request: pb.GetEventStatusRequest, context: Context
    ) -> pb.GetEventStatusResponse:
        stored, entry = await self._service.event_status(
            current_principal().client_id, request.event_id
        )
        return pb.GetEventStatusResponse(
            status=convert.event_status(request.event_id, stored, entry)
        )

    async def CheckOpenAlarm(
        self, request: pb.CheckOpenAlarmRequest, context: Context
    ) -> pb.CheckOpenAlarmResponse:
        alarm = await self._service.check_open_alarm(
            request.vendor_system, request.alarm_id, request.municipality, request.patient.value
        )
        return convert.open_alarm(alarm)
