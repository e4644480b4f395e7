"""Between the contract and the journaling domain: states, names and what Enqueue hands over."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from vkp.common.v1 import common_pb2
from vkp.journaling.v1 import journaling_pb2 as pb
from vkp_journaling import convert
from vkp_journaling.domain.alarm import ALARM_LOG
from vkp_journaling.domain.entry import Entry, EntryState
from vkp_lib.testing.events import sample_event
from vkp_lib.timestamps import timestamp

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_each_state_is_the_contracts_event_state_of_the_same_name_and_back() -> None:
    for state in EntryState:
        value = convert.state_to_pb(state)
        assert common_pb2.EventState.Name(value) == f"EVENT_STATE_{state.value}"
        assert convert.state_filter(value) is state
    assert len(EntryState) == len(common_pb2.EventState.keys()) - 1  # all but UNSPECIFIED


def test_a_listing_without_a_state_asks_for_any() -> None:
    assert convert.state_filter(common_pb2.EVENT_STATE_UNSPECIFIED) is None


def _item() -> pb.EnqueueItem:
    event = sample_event("home_measurement")
    return pb.EnqueueItem(
        entry_id="5b0f1c2e-7d3a-4e8b-9f60-2a1c3d4e5f67",
        event=event,
        vendor_system="vendors/912340007/systems/dispenser-cloud",
        client_id="dosetta-dispenser",
        receive_time=timestamp(NOW),
    )


def test_an_enqueued_item_keeps_its_payload_kind_service_code_and_event_bytes() -> None:
    item = _item()
    new = convert.new_entry(item)
    assert (new.kind, new.service_code) == ("home_measurement", "DHO")
    assert new.event == item.event.SerializeToString(deterministic=True)
    assert new.receive_time == NOW


def test_an_entrys_name_is_entries_slash_its_id_and_parses_back() -> None:
    new = convert.new_entry(_item())
    entry = Entry(
        **dataclasses.asdict(new),
        sequence=1,
        state=EntryState.JOURNALED,
        attempts=1,
        next_attempt_time=None,
        last_error_reason="",
        create_time=NOW,
        update_time=NOW,
        journaled_time=NOW,
        note_identifier=f"{new.entry_id}/1",
    )
    message = convert.entry_to_pb(entry)
    assert message.name == f"entries/{new.entry_id}"
    assert convert.entry_id_of(message.name) == new.entry_id
    assert (message.state, message.service_code) == (
        common_pb2.EVENT_STATE_JOURNALED,
        common_pb2.SERVICE_CODE_DHO,
    )
    assert message.kind == pb.PAYLOAD_KIND_HOME_MEASUREMENT


def test_each_kind_of_entry_is_a_payload_kind_of_its_own_a_handling_log_too() -> None:
    assert convert.KINDS[ALARM_LOG] == pb.PAYLOAD_KIND_ALARM_LOG
    assert sorted(convert.KINDS.values()) == sorted(
        v for v in pb.PayloadKind.values() if v != pb.PAYLOAD_KIND_UNSPECIFIED
    )
