"""gRPC servicer of vkp.lookup.v1.LookupService: thin, proto <-> `LookupService`.

The service serves its whole contract. An RPC whose step has not come yet (step 12) raises
NotImplementedError, which the runner answers UNIMPLEMENTED with the reason NOT_IMPLEMENTED,
after the request has passed authentication and the field rules of the contract.
"""

from __future__ import annotations

from vkp.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from vkp_lib.rpc import Context
from vkp_lookup.service import LookupService


class LookupServicer(lookup_pb2_grpc.LookupServiceServicer):
    def __init__(self, service: LookupService) -> None:
        self.service = service

    async def ListServiceRecipients(
        self, request: lookup_pb2.ListServiceRecipientsRequest, context: Context
    ) -> lookup_pb2.ListServiceRecipientsResponse:
        raise NotImplementedError

    async def GetPatient(
        self, request: lookup_pb2.GetPatientRequest, context: Context
    ) -> lookup_pb2.GetPatientResponse:
        raise NotImplementedError

    async def GetServices(
        self, request: lookup_pb2.GetServicesRequest, context: Context
    ) -> lookup_pb2.GetServicesResponse:
        raise NotImplementedError

    async def GetVisitPlan(
        self, request: lookup_pb2.GetVisitPlanRequest, context: Context
    ) -> lookup_pb2.GetVisitPlanResponse:
        raise NotImplementedError

    async def GetAlarmContext(
        self, request: lookup_pb2.GetAlarmContextRequest, context: Context
    ) -> lookup_pb2.GetAlarmContextResponse:
        raise NotImplementedError
