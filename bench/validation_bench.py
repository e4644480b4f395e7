"""The cost of the contracts' field rules: protovalidate through `vkp_lib.validation`, against
decoding the same message from its wire bytes (the baseline: what any server pays anyway)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from rich.table import Table

from vkp.common.v1 import event_pb2
from vkp.ingest.v1 import ingest_pb2
from vkp_lib.testing.events import PAYLOAD_KINDS, sample_event
from vkp_lib.validation import field_violations

BATCH = 500


def _per_call(work: Callable[[], object], seconds: float) -> float:
    """Seconds per call of `work`, over about `seconds` of calls."""
    for _ in range(100):  # warm up (and let the validator compile the rules)
        work()
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(50):
            work()
        calls += 50
    return (now - start) / calls


def validation_table(seconds: float, noop_rpc_seconds: float) -> Table:
    """Each message's validation time beside its decoding time, measured now, and beside the
    server time of one no-op RPC (`noop_rpc_seconds`, from the runner benchmark's baseline)."""
    cases: list[tuple[str, str, Callable[[], object], Callable[[], object]]] = []
    for kind in PAYLOAD_KINDS:
        event = sample_event(kind)
        wire = event.SerializeToString()
        cases.append(
            (
                f"event, {kind}",
                "µs",
                partial(field_violations, event),
                partial(event_pb2.Event.FromString, wire),
            )
        )
    bad = sample_event("supervision")
    bad.patient.value, bad.supervision.mode_code = "123", "9"
    cases.append(
        (
            "event with 2 violations",
            "µs",
            partial(field_violations, bad),
            partial(event_pb2.Event.FromString, bad.SerializeToString()),
        )
    )
    batch = ingest_pb2.SubmitEventsRequest(
        events=[
            sample_event(PAYLOAD_KINDS[i % len(PAYLOAD_KINDS)], event_id=f"evt-{i}")
            for i in range(BATCH)
        ]
    )
    batch_wire = batch.SerializeToString()
    cases.append(
        (
            f"SubmitEvents of {BATCH}, each event on its own",
            "ms",
            lambda: [field_violations(batch)] + [field_violations(e) for e in batch.events],
            lambda: ingest_pb2.SubmitEventsRequest.FromString(batch_wire),
        )
    )
    table = Table(
        title="field rules (protovalidate) per message, against decoding it and against the "
        f"time of one no-op RPC ({noop_rpc_seconds * 1e6:.0f} µs = 1 / baseline req/s)"
    )
    columns = ("message", "validate", "decode (baseline)", "vs decode", "vs a no-op RPC")
    for column in columns:
        table.add_column(column, justify="left" if column == "message" else "right")
    share = seconds / len(cases) / 2
    for name, unit, validate, decode in cases:
        scale = 1e6 if unit == "µs" else 1e3
        v, d = _per_call(validate, share), _per_call(decode, share)
        table.add_row(
            name,
            f"{v * scale:.1f} {unit}",
            f"{d * scale:.1f} {unit}",
            f"{v / d:.1f}",
            f"{v / noop_rpc_seconds:.2f}",
        )
    return table
