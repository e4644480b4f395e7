"""gRPC servicer of vkp.journaling.v1.JournalingService: thin, proto <-> store.

ListPending and Acknowledge (EPJs that pull) come with the pull-mode step: until then they answer
UNIMPLEMENTED with the reason NOT_IMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from vkp.journaling.v1 import journaling_pb2 as pb
from vkp.journaling.v1 import journaling_pb2_grpc
from vkp_journaling import convert
from vkp_journaling.store import JournalStore
from vkp_lib.rpc import Context


class JournalingServicer(journaling_pb2_grpc.JournalingServiceServicer):
    def __init__(
        self, store: JournalStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self._clock = clock

    async def Enqueue(self, request: pb.EnqueueRequest, context: Context) -> pb.EnqueueResponse:
        results = await self.store.enqueue(
            [convert.new_entry(item) for item in request.items], self._clock()
        )
        return pb.EnqueueResponse(
            results=[
                pb.EnqueueResult(
                    entry_id=r.entry_id, created=r.created, state=convert.STATES[r.state]
                )
                for r in results
            ]
        )

    async def GetEntry(self, request: pb.GetEntryRequest, context: Context) -> pb.GetEntryResponse:
        entry = await self.store.get(request.name.removeprefix("entries/"))
        return pb.GetEntryResponse(entry=convert.entry_to_pb(entry))

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: Context
    ) -> pb.ListEntriesResponse:
        page = await self.store.page(
            request.municipality,
            patient=request.patient.value,
            state=convert.STATE_NAMES[request.state] if request.state else "",
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
        page = await self.store.page(
            request.municipality,
            state="DEAD",
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListDeadLettersResponse(
            entries=[convert.entry_to_pb(e) for e in page.entries],
            next_page_token=page.next_page_token,
        )

    async def RetryEntry(
        self, request: pb.RetryEntryRequest, context: Context
    ) -> pb.RetryEntryResponse:
        entry = await self.store.retry(request.name.removeprefix("entries/"), self._clock())
        return pb.RetryEntryResponse(entry=convert.entry_to_pb(entry))

    async def ListPending(
        self, request: pb.ListPendingRequest, context: Context
    ) -> pb.ListPendingResponse:
        raise NotImplementedError

    async def Acknowledge(
        self, request: pb.AcknowledgeRequest, context: Context
    ) -> pb.AcknowledgeResponse:
        raise NotImplementedError
