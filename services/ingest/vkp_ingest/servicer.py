"""gRPC servicer of vkp.ingest.v1.IngestService: thin, proto <-> domain.

RPCs whose step has not come yet raise NotImplementedError, which the runner answers with
UNIMPLEMENTED and the reason NOT_IMPLEMENTED.
"""

from __future__ import annotations

from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp_lib.rpc import Context


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    async def SubmitEvent(
        self, request: ingest_pb2.SubmitEventRequest, context: Context
    ) -> ingest_pb2.SubmitEventResponse:
        raise NotImplementedError
