"""gRPC servicer of vkp.journaling.v1.JournalingService: proto -> domain, the use case, domain ->
proto; nothing else. ListPending and Acknowledge (EPJs that pull) go to the pull use cases, with
the caller's principal (its organisation decides which municipality it may pull).
"""

from __future__ import annotations

from vkp.journaling.v1 import journaling_pb2 as pb
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_journaling import convert
from vkp_journaling.service import JournalingService, PullService
from vkp_lib.auth import current_principal
from vkp_lib.rpc import Context


class JournalingServicer(journaling_pb2_grpc.JournalingServiceServicer):
    def __init__(self, service: JournalingService, pulls: PullService) -> None:
        self._service = service
        self._pulls = pulls

    async def Enqueue(self, request: pb.EnqueueRequest, context: Context) -> pb.EnqueueResponse:
        results = await self._service.enqueue([convert.new_entry(item) for item in request.items])
        return pb.EnqueueResponse(results=[convert.enqueued_to_pb(r) for r in results])

    async def GetEntry(self, request: pb.GetEntryRequest, context: Context) -> pb.GetEntryResponse:
        entry = await self._service.get_entry(convert.entry_id_of(request.name))
        return pb.GetEntryResponse(entry=convert.entry_to_pb(entry))

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: Context
    ) -> pb.ListEntriesResponse:
        page = await self._service.list_entries(
            request.municipality,
            patient=request.patient.value,
            state=convert.state_filter(request.state),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListEntriesResponse(
            entries=[convert.entry_to_pb(e) for e in page.entries],
            next_page_token=page.next_page_token,
        )

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersResponse:
        page = await self._service.list_dead_letters(
            request.municipality, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListDeadLettersResponse(
            entries=[convert.entry_to_pb(e) for e in page.entries],
            next_page_token=page.next_page_token,
        )

    async def RetryEntry(
        self, request: pb.RetryEntryRequest, context: Context
    ) -> pb.RetryEntryResponse:
        entry = await self._service.retry_entry(convert.entry_id_of(request.name))
        return pb.RetryEntryResponse(entry=convert.entry_to_pb(entry))

    async def ListPending(
        self, request: pb.ListPendingRequest, context: Context
    ) -> pb.ListPendingResponse:
        page = await self._pulls.list_pending(
            current_principal(),
            request.municipality,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListPendingResponse(
            notes=[convert.pending_note_to_pb(n) for n in page.notes],
            next_page_token=page.next_page_token,
        )

    async def Acknowledge(
        self, request: pb.AcknowledgeRequest, context: Context
    ) -> pb.AcknowledgeResponse:
        results = await self._pulls.acknowledge(
            current_principal(),
            request.municipality,
            [convert.acknowledgement(a) for a in request.acknowledgements],
        )
        return pb.AcknowledgeResponse(
            results=[
                convert.acknowledge_result_to_pb(a.entry, r)
                for a, r in zip(request.acknowledgements, results, strict=True)
            ]
        )
