"""The cost of the contracts' field rules: protovalidate through `vkp_lib.validation`, against
decoding the same message from its wire bytes (the baseline: what any server pays anyway)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from report import Row

from vkp.common.v1 import event_pb2
from vkp.ingest.v1 import ingest_pb2
from vkp_lib.testing.events import PAYLOAD_KINDS, sample_event
from vkp_lib.validation import field_violations

BATCH = 500


def _per_call(work: Callable[[], object], seconds: float) -> float:
    """Seconds per call of `work`, over about `seconds` of calls."""
    warm_up = 100 if seconds >= 0.5 else 3
    start = time.perf_counter()
    for _ in range(warm_up):  # warm up (and let the validator compile the rules)
        work()
    # Calls between looks at the clock: many of a fast one, one of a slow one.
    chunk = 50 if (time.perf_counter() - start) / warm_up < 1e-4 else 1
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(chunk):
            work()
        calls += chunk
    return (now - start) / calls


def validation_rows(seconds: float, noop_rpc_seconds: float) -> list[Row]:
    """Each message's validation time beside the server time of one no-op RPC
    (`noop_rpc_seconds`, from the runner benchmark's baseline), with its decoding time, measured
    now, in the details."""
    cases: list[tuple[str, str, str, Callable[[], object], Callable[[], object]]] = []
    for kind in PAYLOAD_KINDS:
        event = sample_event(kind)
        wire = event.SerializeToString()
        cases.append(
            (
                kind,
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
            "violations",
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
            "batch",
            f"SubmitEvents of {BATCH}, each event on its own",
            "ms",
            lambda: [field_violations(batch)] + [field_violations(e) for e in batch.events],
            lambda: ingest_pb2.SubmitEventsRequest.FromString(batch_wire),
        )
    )
    rows: list[Row] = []
    share = seconds / len(cases) / 2
    for key, name, unit, validate, decode in cases:
        scale = 1e6 if unit == "µs" else 1e3
        v, d = _per_call(validate, share), _per_call(decode, share)
        rows.append(
            Row(
                key=f"validation.{key}",
                name=f"field rules: {name}",
                value=v * scale,
                unit=unit,
                ratio=v / noop_rpc_seconds,
                ratio_of="no-op RPC time",
                details={"decode": d * scale, "unit": unit, "vs_decode": v / d},
            )
        )
    return rows
