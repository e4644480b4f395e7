"""The bench's events, encoded before the clock starts: home measurements of the simulator's
sandbox patients (synthetic national ids), each with an event id of its own; for ingest
(SubmitEvent, SubmitEvents), or as journal entries straight into journaling's Enqueue (as
ingest's relay sends them, with a service token)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from hub import VENDOR, patients

from vkp.common.v1 import event_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.journaling.v1 import journaling_pb2 as jpb
from vkp_lib.sandbox import SandboxMunicipality
from vkp_lib.testing.events import sample_event

SUBMIT_EVENT = "/vkp.ingest.v1.IngestService/SubmitEvent"
SUBMIT_EVENTS = "/vkp.ingest.v1.IngestService/SubmitEvents"
GET_EVENT_STATUS = "/vkp.ingest.v1.IngestService/GetEventStatus"
ENQUEUE = "/vkp.journaling.v1.JournalingService/Enqueue"
GET_ENTRY = "/vkp.journaling.v1.JournalingService/GetEntry"
BATCH = 500


class Events:
    """Events of one municipality's sandbox patients, in turn; ids `<prefix>-<uuid>`."""

    def __init__(self, municipality: SandboxMunicipality, prefix: str = "bench") -> None:
        self._template = sample_event("home_measurement", at=datetime.now(UTC))
        self._template.municipality = municipality.organization_number
        assert self._template.service_code  # DHO: the vendor's service
        self._ids = [p.national_id for p in patients(municipality)]
        self._prefix = prefix
        self._count = 0
        self.vendor = VENDOR

    def next(self) -> event_pb2.Event:
        event = event_pb2.Event()
        event.CopyFrom(self._template)
        event.event_id = f"{self._prefix}-{uuid.uuid4().hex}"
        event.patient.value = self._ids[self._count % len(self._ids)]
        self._count += 1
        return event

    def unary(self, count: int) -> list[bytes]:
        """`count` encoded SubmitEventRequests."""
        return [pb.SubmitEventRequest(event=self.next()).SerializeToString() for _ in range(count)]

    def batches(self, count: int, size: int = BATCH) -> list[bytes]:
        """`count` encoded SubmitEventsRequests of `size` events."""
        return [self.batch(size) for _ in range(count)]

    def batch(self, size: int = BATCH) -> bytes:
        return pb.SubmitEventsRequest(events=[self.next() for _ in range(size)]).SerializeToString()

    def entries(self, size: int = BATCH) -> tuple[list[str], bytes]:
        """An encoded EnqueueRequest of `size` new entries, as ingest's relay would send them
        (the entry id a new hub id, received now), and their entry ids."""
        items = []
        for _ in range(size):
            item = jpb.EnqueueItem(
                entry_id=str(uuid.uuid4()),
                event=self.next(),
                vendor_system=self.vendor.name,
                client_id=self.vendor.client_ids[0],
            )
            item.receive_time.GetCurrentTime()
            items.append(item)
        return [i.entry_id for i in items], jpb.EnqueueRequest(items=items).SerializeToString()


def receipts(responses: Sequence[bytes]) -> list[pb.EventReceipt]:
    """The receipts in encoded SubmitEventResponses."""
    return [pb.SubmitEventResponse.FromString(r).receipt for r in responses]


def entry_id(receipt: pb.EventReceipt) -> str:
    """The hub's id of an accepted event (`events/{id}`): the journal entry's id."""
    return receipt.name.rpartition("/")[2]
