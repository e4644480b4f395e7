"""Ingest's open-alarm query (`CheckOpenAlarm`, internal: the hub's service token), as lookup
asks it before it answers `GetAlarmContext`."""

from __future__ import annotations

from datetime import UTC

import grpc

from vkp.common.v1 import common_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp_lib.logging import get_logger
from vkp_lookup.domain.need import AlarmState

log = get_logger("vkp.lookup.alarms")


class AlarmsUnavailable(Exception):
    """Ingest cannot say now whether the alarm is open."""


class AlarmClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)

    async def state(
        self, *, vendor_system: str, alarm_id: str, patient: str, municipality: str
    ) -> AlarmState | None:
        """What ingest knows of this vendor system's alarm for the patient; None when it has
        seen no step of it."""
        request = pb.CheckOpenAlarmRequest(
            vendor_system=vendor_system,
            alarm_id=alarm_id,
            patient=common_pb2.NationalId(value=patient),
            municipality=municipality,
        )
        try:
            answer = await self._stub.CheckOpenAlarm(request)
        except grpc.aio.AioRpcError as exc:
            log.warning("ingest not reached for an alarm's state", code=exc.code().name)
            raise AlarmsUnavailable from None
        if not answer.HasField("opened_time") and not answer.open:
            return None
        closed = (
            answer.closed_time.ToDatetime(tzinfo=UTC) if answer.HasField("closed_time") else None
        )
        return AlarmState(open=answer.open, close_time=closed)
