"""gRPC servicer of vkp.lookup.v1.LookupService: thin, the request to the use case of
service.py and its answer back to the response (convert.py); nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

from vkp.common.v1 import common_pb2
from vkp.lookup.v1 import lookup_pb2 as pb
from vkp.lookup.v1 import lookup_pb2_grpc
from vkp_lib.auth import current_principal
from vkp_lib.rpc import Context
from vkp_lookup import convert
from vkp_lookup.service import Call, LookupService


def _call(
    method: str,
    municipality: str,
    service_code: common_pb2.ServiceCode.ValueType,
    alarm_id: str = "",
) -> Call:
    return Call(current_principal(), municipality, service_code, method, alarm_id)


class LookupServicer(lookup_pb2_grpc.LookupServiceServicer):
    def __init__(self, service: LookupService) -> None:
        self.service = service

    async def ListServiceRecipients(
        self, request: pb.ListServiceRecipientsRequest, context: Context
    ) -> pb.ListServiceRecipientsResponse:
        call = _call("ListServiceRecipients", request.municipality, request.service_code)
        page = await self.service.list_service_recipients(
            call, request.page_size, request.page_token
        )
        return pb.ListServiceRecipientsResponse(
            recipients=[convert.recipient_to_pb(r) for r in page.recipients],
            next_page_token=page.next_page_token,
            freshness=convert.freshness_to_pb(page.freshness, datetime.now(UTC)),
        )

    async def GetPatient(
        self, request: pb.GetPatientRequest, context: Context
    ) -> pb.GetPatientResponse:
        call = _call("GetPatient", request.municipality, request.service_code)
        answer = await self.service.get_patient(call, request.patient.value)
        return pb.GetPatientResponse(
            patient=convert.patient_to_pb(answer.value),
            freshness=convert.freshness_to_pb(answer.freshness, datetime.now(UTC)),
            basis=convert.basis_to_pb(answer.basis),
        )

    async def GetServices(
        self, request: pb.GetServicesRequest, context: Context
    ) -> pb.GetServicesResponse:
        call = _call("GetServices", request.municipality, request.service_code)
        answer = await self.service.get_services(call, request.patient.value)
        return pb.GetServicesResponse(
            services=[convert.service_to_pb(e) for e in answer.value],
            freshness=convert.freshness_to_pb(answer.freshness, datetime.now(UTC)),
            basis=convert.basis_to_pb(answer.basis),
        )

    async def GetVisitPlan(
        self, request: pb.GetVisitPlanRequest, context: Context
    ) -> pb.GetVisitPlanResponse:
        call = _call("GetVisitPlan", request.municipality, request.service_code)
        answer = await self.service.get_visit_plan(call, request.patient.value, request.date)
        return pb.GetVisitPlanResponse(
            visits=[convert.visit_to_pb(v) for v in answer.value],
            freshness=convert.freshness_to_pb(answer.freshness, datetime.now(UTC)),
            basis=convert.basis_to_pb(answer.basis),
        )

    async def GetAlarmContext(
        self, request: pb.GetAlarmContextRequest, context: Context
    ) -> pb.GetAlarmContextResponse:
        call = _call(
            "GetAlarmContext", request.municipality, request.service_code, request.alarm_id
        )
        answer = await self.service.get_alarm_context(call, request.patient.value)
        return pb.GetAlarmContextResponse(
            context=convert.alarm_context_to_pb(answer.value),
            freshness=convert.freshness_to_pb(answer.freshness, datetime.now(UTC)),
            basis=convert.basis_to_pb(answer.basis),
        )
