"""The hub's benchmarks: one table, every figure beside a baseline measured in the same run, on
SQLite and on PostgreSQL where the row has a database; `--json PATH` writes the same figures.

    .venv/bin/python bench/run.py                  # the full run (make bench), a few minutes
    .venv/bin/python bench/run.py --smoke          # every row with tiny sizes (make bench-smoke)
    .venv/bin/python bench/run.py --only ingest,audit --databases sqlite --seconds 5

The rows (issue 15's table, and the costs behind them):

- runner (runner_bench.py): a no-op unary RPC on a bare grpc.aio server (the baseline), behind
  the hub's runner, and behind it with a vendor token to verify; 16 in flight, each server in a
  process of its own. The baseline and the runner with a token are measured again with h2load, a
  load generator in C (h2load_bench.py), against each other.
- validation, identity: the field rules on an event of each kind and on a batch of 500, and
  token and DPoP verification, per call against the server time of one no-op RPC.
- Then, per database, the whole hub (hub.py: the EPJ simulator and the five services, seeded
  with the sandbox, plus a lone ingest without journaling):
  - idle (idle_bench.py): each service's CPU while nothing happens;
  - audit (audit_bench.py): Record awaited by 16 callers;
  - ingest (ingest_bench.py): SubmitEvent at 16 in flight, and SubmitEvents of 500;
  - lookup (lookup_bench.py): GetAlarmContext and GetPatient at 16 in flight, cache hits
    with their audit records committed, then cold misses with the EPJ 50 ms slower (one EPJ
    fetch per key, by the simulator's counters);
  - alarm (alarm_bench.py): alarms' steps through ingest, the closing step's acceptance to
    the alarm's handling log in the EPJ (the settle window, 1 s in the bench hub, part of it);
  - e2e (e2e_bench.py): a steady offered rate, acceptance to journaled, lost and duplicated;
  - backlog (backlog_bench.py): delivery with a large backlog in one municipality against an
    empty queue's, and another municipality's acceptance to journaled meanwhile.

The load client is never the limit unseen: requests are encoded before the clock starts and
its CPU share (of one core) is printed beside each row. The machine's other work shows in the
figures: compare ratios, not absolute rates, across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alarm_bench import measure_alarms
from audit_bench import measure_audit
from backlog_bench import measure_backlog
from e2e_bench import Drain, measure_e2e
from h2load_bench import find_h2load, run_h2load
from hub import (
    ALARM_SETTLE_SECONDS,
    POSTGRESQL,
    SERVICES,
    SQLITE,
    Hub,
    Started,
    running_hub,
    start_hubs,
    stop_hubs,
)
from identity_bench import identity_rows
from idle_bench import measure_idle
from ingest_bench import measure_ingest
from instructions_bench import count_instructions, find_valgrind
from load import Load, merged
from lookup_bench import lookup_rows
from notes import ALL_IN
from report import Row, print_table, write_json
from runner_bench import METHOD, NoopLoad, NoopServer, measure_noop
from validation_bench import validation_rows

from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.logging import configure_logging

T = TypeVar("T")
HUB_GROUPS = ("idle", "audit", "ingest", "lookup", "alarm", "e2e", "backlog")
GROUPS = ("runner", "validation", "identity", *HUB_GROUPS)
#: Run only when named in --only: a server under valgrind takes a minute.
OPTIONAL_GROUPS = ("instructions",)
DATABASES = {"sqlite": SQLITE, "postgresql": POSTGRESQL}
#: The no-op servers are measured in turn this many times (of seconds / rounds each).
RUNNER_ROUNDS = 3


@dataclass(frozen=True)
class Sizes:
    """How long and how much each row runs: the full run's, or the smoke run's."""

    seconds: float
    rate: float
    duration: float
    #: The wait for notes ends when all are in, when none came for `stall` seconds, or at
    #: `drain_max`; the simulator is asked every `poll` seconds.
    stall: float
    drain_max: float
    poll: float
    backlog: int
    empty_events: int
    window: float
    other_rate: float
    idle_settle: float
    idle_seconds: float
    #: Alarms sent at once in the alarm row.
    alarms: int


FULL = Sizes(
    seconds=3.0,
    rate=500.0,
    duration=60.0,
    stall=10.0,
    drain_max=1800.0,
    poll=0.5,
    backlog=100_000,
    empty_events=2_000,
    window=15.0,
    other_rate=20.0,
    idle_settle=5.0,
    idle_seconds=10.0,
    alarms=50,
)
SMOKE = Sizes(
    seconds=0.2,
    rate=100.0,
    duration=0.5,
    stall=5.0,
    drain_max=30.0,
    poll=0.1,
    backlog=100,
    empty_events=20,
    window=0.4,
    other_rate=20.0,
    idle_settle=0.1,
    idle_seconds=0.3,
    alarms=3,
)


def _ratio_met(ratio: float, target: float) -> bool:
    return not math.isnan(ratio) and ratio >= target


def _rate_row(
    key: str,
    name: str,
    load: Load,
    base: Load,
    *,
    database: str = "",
    target: float | None = None,
    unit: str = "req/s",
) -> Row:
    ratio = load.rate / base.rate
    return Row(
        key=key,
        name=name,
        database=database,
        value=load.rate,
        unit=unit,
        ratio=ratio,
        ratio_of="no-op",
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        target="" if target is None else f"≥ {target:.2f} x no-op",
        met=None if target is None else _ratio_met(ratio, target),
        client_cpu=load.client_cpu,
        details={"calls": load.calls, "seconds": load.seconds, "baseline_rate": base.rate},
    )


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args = args
        self.sizes = sizes
        self.rows: list[Row] = []
        self.began = time.perf_counter()
        self.base: Load | None = None
        self.issuer_dir = tempfile.TemporaryDirectory(prefix="vkp-bench-issuer-")
        self.issuer = DevelopmentIssuer.open(Path(self.issuer_dir.name))
        #: The baseline's server, up for the whole run: rows measure it again beside them.
        self.bare = NoopServer("bare")

    def wants(self, group: str) -> bool:
        return group in self.args.only

    def step(self, label: str, work: Callable[..., T], *args: Any) -> T:
        began = time.perf_counter()
        print(f"… {label}", file=sys.stderr, flush=True)
        result = work(*args)
        ended = time.perf_counter()
        print(
            f"  {label}: {ended - began:.1f} s (done {ended - self.began:.1f} s into the run)",
            file=sys.stderr,
            flush=True,
        )
        return result

    # -- the no-op servers --

    def runner(self) -> None:
        """The no-op servers in turn, a few rounds each, so a change in the machine's other
        work falls on all three alike."""
        token = self.issuer.vendor_token("bench-client", [Scopes.INGEST])
        bearer = (("authorization", f"Bearer {token}"),)
        servers = {
            "runner": NoopServer("runner"),
            "runner-auth": NoopServer("runner-auth", self.issuer.env()),
            "runner-auth-traced": NoopServer("runner-auth-traced", self.issuer.env()),
        }
        try:
            kinds = ["bare", *servers] if self.wants("runner") else ["bare"]
            rounds = 1 if self.args.smoke else RUNNER_ROUNDS
            share = self.sizes.seconds / rounds
            runs: dict[str, list[Load]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for kind in kinds:
                    address = self.bare.address if kind == "bare" else servers[kind].address
                    metadata = bearer if kind.startswith("runner-auth") else ()
                    load = NoopLoad(share, self.args.concurrency, metadata)
                    runs[kind].append(measure_noop(address, load))
            base = self.base = merged(runs["bare"])
            self.rows.append(
                _rate_row("noop.bare", "no-op RPC, bare grpc.aio (the baseline)", base, base)
            )
            if not self.wants("runner"):
                return
            runner, auth = merged(runs["runner"]), merged(runs["runner-auth"])
            self.rows.append(_rate_row("runner", "runner no-op, no token", runner, base))
            self.rows.append(
                _rate_row("runner.token", "runner no-op, vendor token", auth, base, target=0.85)
            )
            traced = merged(runs["runner-auth-traced"])
            self.rows.append(
                _rate_row("runner.token.traced", "runner, token, spans exported", traced, base)
            )
            self._h2load(servers["runner-auth"], bearer)
        finally:
            for server in servers.values():
                server.stop()

    def instructions(self) -> None:
        """Instructions per no-op call, bare and behind the runner with a vendor token, each
        server under callgrind (in parallel: they wait on valgrind more than on the cores)."""
        names = (
            ("instructions.bare", "no-op RPC, bare grpc.aio, instructions per call"),
            ("instructions.runner.token", "runner no-op, vendor token, instructions per call"),
        )
        valgrind, why = find_valgrind()
        if valgrind is None:
            self.rows += [Row(key=key, name=name, skipped=why) for key, name in names]
            return
        token = self.issuer.vendor_token("bench-client", [Scopes.INGEST])
        bearer = (("authorization", f"Bearer {token}"),)
        calls = 200 if self.args.smoke else 2_000
        with ThreadPoolExecutor(2) as pool:
            bare = pool.submit(count_instructions, "bare", None, (), calls, self.args.concurrency)
            auth = pool.submit(
                count_instructions,
                "runner-auth",
                self.issuer.env(),
                bearer,
                calls,
                self.args.concurrency,
            )
            counts = (bare.result(), auth.result())
        for (key, name), count, target in zip(names, counts, (None, 0.85), strict=True):
            # As a rate: what a core does per second is inversely proportional to it.
            ratio = counts[0].per_call / count.per_call
            self.rows.append(
                Row(
                    key=key,
                    name=name,
                    value=count.per_call,
                    unit="instr",
                    ratio=ratio,
                    ratio_of="no-op, as a rate",
                    target="" if target is None else f"≥ {target:.2f} x no-op",
                    met=None if target is None else _ratio_met(ratio, target),
                    details={"calls": count.calls, "instructions": count.instructions},
                )
            )

    def baseline_now(self) -> Load:
        """The no-op server measured again, right before a row that is compared with it: the
        machine's other work changes over a run of minutes."""
        load = NoopLoad(max(0.1, self.sizes.seconds / 2), self.args.concurrency)
        return measure_noop(self.bare.address, load)

    def _h2load(self, runner: NoopServer, metadata: tuple[tuple[str, str], ...]) -> None:
        h2load, why = find_h2load(install=not self.args.smoke and not self.args.no_install)
        names = (
            ("h2load.bare", "no-op RPC, bare grpc.aio, h2load (C client)"),
            ("h2load.runner.token", "runner no-op, vendor token, h2load (C client)"),
        )
        if h2load is None:
            print(f"h2load rows skipped: {why}", file=sys.stderr)
            self.rows += [Row(key=key, name=name, skipped=why) for key, name in names]
            return
        seconds, concurrency = self.sizes.seconds, self.args.concurrency
        bare = run_h2load(h2load, self.bare.address, METHOD, seconds, concurrency)
        auth = run_h2load(h2load, runner.address, METHOD, seconds, concurrency, metadata)
        assert self.base is not None
        for (key, name), figures, baseline, target in (
            (names[0], bare, bare, None),
            (names[1], auth, bare, 0.85),
        ):
            ratio = figures.rate / baseline.rate
            self.rows.append(
                Row(
                    key=key,
                    name=name,
                    value=figures.rate,
                    unit="req/s",
                    ratio=ratio,
                    ratio_of="no-op, h2load",
                    target="" if target is None else f"≥ {target:.2f} x no-op",
                    met=None if target is None else _ratio_met(ratio, target),
                    client_cpu=figures.client_cpu,
                    details={
                        "mean_ms": figures.mean_ms,
                        "calls": figures.succeeded,
                        "vs_python_client_baseline": figures.rate / self.base.rate,
                    },
                )
            )

    @property
    def noop_rpc_seconds(self) -> float:
        assert self.base is not None
        return 1 / self.base.rate

    # -- the whole hub, per database --

    def hub_rows(self, hub: Hub) -> None:
        for group, work in (
            ("idle", self.idle),
            ("audit", self.audit),
            ("ingest", self.ingest),
            ("lookup", self.lookup),
            ("alarm", self.alarm),
        ):
            if self.wants(group):
                self.step(f"{group} ({hub.database})", work, hub)
        # The rows before leave the hub's journaling idle, but e2e may end its drain with notes
        # still to deliver: then the backlog row, whose empty queue must be empty, gets a hub of
        # its own.
        busy_journaling = False
        if self.wants("e2e"):
            self.step(f"e2e ({hub.database})", self.e2e, hub)
            busy_journaling = self.rows_of("e2e", hub.database)[0].details["drain_end"] != ALL_IN
        if not self.wants("backlog"):
            return
        if not busy_journaling:
            self.step(f"backlog ({hub.database})", self.backlog, hub)
            return
        with running_hub(hub.database) as fresh:
            self.step(f"backlog ({hub.database}, a hub of its own)", self.backlog, fresh)

    def idle(self, hub: Hub) -> None:
        shares = measure_idle(hub, self.sizes.idle_settle, self.sizes.idle_seconds)
        total = sum(shares.values()) * 100
        self.rows.append(
            Row(
                key="idle",
                name=f"idle hub, CPU over {self.sizes.idle_seconds:g} s",
                database=hub.database,
                value=total,
                unit="% core",
                target="< 2 % of a core",
                met=total < 2,
                details={f"{name}_percent": shares[name] * 100 for name in SERVICES},
            )
        )
        self.rows += [
            Row(
                key=f"idle.{name}",
                name=f"  idle: {name}",
                database=hub.database,
                value=shares[name] * 100,
                unit="% core",
            )
            for name in SERVICES
        ]

    def audit(self, hub: Hub) -> None:
        base = self.baseline_now()
        load = measure_audit(hub, self.sizes.seconds, self.args.concurrency, base.rate)
        self.rows.append(
            _rate_row(
                "audit",
                f"audit Record awaited by {self.args.concurrency} callers",
                load,
                base,
                database=hub.database,
                target=0.60,
                unit="records/s",
            )
        )

    def ingest(self, hub: Hub) -> None:
        base = self.baseline_now()
        figures = measure_ingest(hub, self.sizes.seconds, self.args.concurrency, base.rate)
        self.rows.append(
            _rate_row(
                "ingest.unary",
                f"ingest SubmitEvent, durable, token, {self.args.concurrency} in flight",
                figures.unary,
                base,
                database=hub.database,
                target=0.60,
            )
        )
        batches = figures.batches
        self.rows.append(
            Row(
                key="ingest.batch",
                name="ingest SubmitEvents of 500, back to back",
                database=hub.database,
                value=batches.item_rate,
                unit="events/s",
                ratio=batches.item_rate / base.rate,
                ratio_of="no-op",
                p50_ms=batches.p50_ms,
                p99_ms=batches.p99_ms,
                target="≥ 10,000 events/s",
                met=batches.item_rate >= 10_000,
                client_cpu=batches.client_cpu,
                details={
                    "batches": batches.calls,
                    "seconds": batches.seconds,
                    "baseline_rate": base.rate,
                },
            )
        )

    def lookup(self, hub: Hub) -> None:
        self.rows += lookup_rows(hub, self.sizes.seconds, self.args.concurrency, self.baseline_now)

    @property
    def drain(self) -> Drain:
        return Drain(self.sizes.stall, self.sizes.drain_max, self.sizes.poll)

    def e2e(self, hub: Hub) -> None:
        sizes = self.sizes
        figures = measure_e2e(hub, sizes.rate, sizes.duration, self.drain)
        journaled, drained = figures.journaled, figures.drained
        met = (
            journaled.p99_ms <= 1000
            and journaled.lost == 0
            and journaled.duplicated == 0
            and figures.refused == 0
        )
        self.rows.append(
            Row(
                key="e2e",
                name=f"event → journaled, whole hub, {sizes.rate:g}/s for {sizes.duration:g} s",
                database=hub.database,
                value=figures.achieved_rate,
                unit="events/s",
                shown=(
                    f"{figures.achieved_rate:,.0f} events/s, {journaled.lost:,} lost, "
                    f"{journaled.duplicated:,} dup; drained in {drained.seconds:,.0f} s"
                ),
                p50_ms=journaled.p50_ms,
                p99_ms=journaled.p99_ms,
                target="p99 ≤ 1 s, 0 lost, 0 dup",
                met=met,
                client_cpu=figures.client_cpu,
                details={
                    "offered_rate": figures.offered_rate,
                    "accepted": figures.accepted,
                    "refused": figures.refused,
                    "journaled": journaled.journaled,
                    # Accepted and not journaled when the drain ended (every note in, no note
                    # for `stall` seconds, or the cap: drain_end says which).
                    "lost": journaled.lost,
                    "duplicated": journaled.duplicated,
                    "unexpected_notes": journaled.unexpected,
                    "drain_seconds": drained.seconds,
                    "drain_end": drained.end,
                    "client_max_lag_seconds": figures.max_lag_seconds,
                    "epj_transactions": figures.epj_transactions,
                },
            )
        )

    def alarm(self, hub: Hub) -> None:
        sizes = self.sizes
        figures = measure_alarms(hub, sizes.alarms, sizes.stall, sizes.poll)
        self.rows.append(
            Row(
                key="alarm",
                name=(
                    f"alarm step → handling log journaled after close, {figures.alarms} alarms "
                    f"at once, settle window {ALARM_SETTLE_SECONDS:g} s included"
                ),
                database=hub.database,
                value=figures.p99_ms,
                unit="ms p99",
                shown=(
                    f"{figures.journaled:,} logs, {figures.lost:,} lost, {figures.duplicated:,} dup"
                ),
                p50_ms=figures.p50_ms,
                p99_ms=figures.p99_ms,
                details={
                    "alarms": figures.alarms,
                    "steps_per_alarm": 5,
                    # The figure runs from the closing step's acceptance to the log in the EPJ,
                    # the settle window (journaling's VKP_JOURNALING_ALARM_SETTLE_SECONDS, set
                    # short in the bench hub) included, minus nothing.
                    "settle_seconds": ALARM_SETTLE_SECONDS,
                    "journaled": figures.journaled,
                    "lost": figures.lost,
                    "duplicated": figures.duplicated,
                    "refused_steps_alarms": figures.refused,
                    "wait_seconds": figures.wait_seconds,
                },
            )
        )

    def backlog(self, hub: Hub) -> None:
        sizes = self.sizes
        figures = measure_backlog(
            hub, sizes.backlog, sizes.empty_events, sizes.window, sizes.other_rate, self.drain
        )
        other, fill, split = figures.other.journaled, figures.fill, figures.split
        quarter = max(1, len(fill.batch_seconds) // 4)
        self.rows.append(
            Row(
                key="backlog",
                name=f"journaling, {figures.waiting_at_start:,} waiting in one municipality "
                "(ms: another's)",
                database=hub.database,
                value=figures.backlog_rate,
                unit="notes/s",
                shown=(
                    f"{figures.backlog_rate:,.1f} notes/s (empty {figures.empty_rate:,.1f}), "
                    f"{other.lost:,} lost"
                ),
                ratio=figures.ratio,
                ratio_of="empty queue",
                p50_ms=other.p50_ms,
                p99_ms=other.p99_ms,
                target="≥ 0.80 x empty; other's p99 ≤ 1 s",
                met=_ratio_met(figures.ratio, 0.8) and other.p99_ms <= 1000 and other.lost == 0,
                client_cpu=figures.other.client_cpu,
                details={
                    "filled_by": "journaling Enqueue, service token",
                    "empty_queue_events": figures.empty_events,
                    "empty_queue_rate": figures.empty_rate,
                    "empty_queue_drain_end": figures.empty_drained.end,
                    "empty_queue_journaling_cpu_us_per_note": figures.empty_cpu_us,
                    "backlog_journaling_cpu_us_per_note": figures.backlog_cpu_us,
                    "backlog_journaling_cpu_share": figures.backlog_cpu_share,
                    "backlog": len(fill.entries),
                    "fill_rate": fill.rate,
                    "fill_seconds": fill.seconds,
                    "fill_first_quarter_batch_p50_ms": fill.batch_p50_ms(slice(0, quarter)),
                    "fill_last_quarter_batch_p50_ms": fill.batch_p50_ms(slice(-quarter, None)),
                    "waiting_at_window_start": figures.waiting_at_start,
                    "window_seconds": figures.window_seconds,
                    "other_offered_rate": figures.other.offered_rate,
                    "other_accepted": figures.other.accepted,
                    "other_journaled": other.journaled,
                    "other_not_journaled": other.lost,
                    "other_duplicated": other.duplicated,
                    "other_p50_ms": other.p50_ms,
                    "other_p99_ms": other.p99_ms,
                    "other_drain_seconds": figures.other.drained.seconds,
                    "other_drain_end": figures.other.drained.end,
                    "other_ingest_relay_p50_ms": split.relay_p50_ms,
                    "other_ingest_relay_p99_ms": split.relay_p99_ms,
                    "other_journaling_p50_ms": split.journaling_p50_ms,
                    "other_journaling_p99_ms": split.journaling_p99_ms,
                },
            )
        )

    # -- all of it --

    def run(self) -> None:
        hubs = any(self.wants(g) for g in HUB_GROUPS) and self.args.databases
        with contextlib.ExitStack() as stack:
            early: Future[Started] | None = None
            if self.args.smoke and hubs:
                # The smoke run starts its hubs while the first rows run: its time goes to
                # checking that every row gives a figure, not to figures anyone reads.
                pool = stack.enter_context(ThreadPoolExecutor(1))
                early = pool.submit(self.step, "starting the hubs", start_hubs, self.args.databases)
                stack.callback(
                    lambda: self.step(
                        "stopping the hubs", stop_hubs, early.result() if early else []
                    )
                )
            stack.callback(self.bare.stop)
            self.step("runner", self.runner)
            if self.wants("validation"):
                self.step("validation", self.validation)
            if self.wants("identity"):
                self.step("identity", self.identity)
            if self.wants("instructions"):
                self.step("instructions (callgrind)", self.instructions)
            if early is not None:
                # Each hub's rows in a thread of their own: they wait on the hubs more than
                # they work.
                with ThreadPoolExecutor(len(self.args.databases)) as rows:
                    for done in [rows.submit(self.hub_rows, hub) for _, hub in early.result()]:
                        done.result()
            elif hubs:
                for database in self.args.databases:
                    with running_hub(database) as hub:
                        self.hub_rows(hub)

    def rows_of(self, key: str, database: str) -> list[Row]:
        return [row for row in self.rows if row.key == key and row.database == database]

    def ordered_rows(self) -> list[Row]:
        """The rows by key as first measured, each key's databases together (SQLite first)."""
        keys = list(dict.fromkeys(row.key for row in self.rows))
        databases = ["", *DATABASES.values()]
        return sorted(
            self.rows, key=lambda row: (keys.index(row.key), databases.index(row.database))
        )

    def validation(self) -> None:
        self.rows += validation_rows(self.sizes.seconds, self.noop_rpc_seconds)

    def identity(self) -> None:
        self.rows += identity_rows(self.issuer, self.sizes.seconds, self.noop_rpc_seconds)


def _names(text: str, allowed: Any) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every row with tiny sizes")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, help="of each closed-loop row (3; smoke 0.3)")
    parser.add_argument("--rate", type=float, help="events/s offered in the e2e row (500)")
    parser.add_argument("--duration", type=float, help="seconds of the e2e row (60)")
    parser.add_argument("--backlog", type=int, help="events waiting in the backlog row (100,000)")
    parser.add_argument("--window", type=float, help="seconds measured in the backlog row (15)")
    parser.add_argument("--alarms", type=int, help="alarms sent at once in the alarm row (50)")
    parser.add_argument(
        "--only",
        type=lambda text: _names(text, GROUPS + OPTIONAL_GROUPS),
        default=list(GROUPS),
        help=f"row groups, comma separated: {','.join(GROUPS)} (the no-op baseline always "
        f"runs); and, only when named, {','.join(OPTIONAL_GROUPS)} (callgrind, a minute)",
    )
    parser.add_argument(
        "--databases",
        type=lambda text: [DATABASES[n] for n in _names(text, DATABASES)],
        default=list(DATABASES.values()),
        help="sqlite,postgresql",
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get install h2load")
    args = parser.parse_args()
    base = SMOKE if args.smoke else FULL
    sizes = Sizes(
        seconds=args.seconds or base.seconds,
        rate=args.rate or base.rate,
        duration=args.duration or base.duration,
        stall=base.stall,
        drain_max=base.drain_max,
        poll=base.poll,
        backlog=args.backlog if args.backlog is not None else base.backlog,
        empty_events=base.empty_events,
        window=args.window or base.window,
        other_rate=base.other_rate,
        idle_settle=base.idle_settle,
        idle_seconds=base.idle_seconds,
        alarms=args.alarms or base.alarms,
    )
    configure_logging("bench", "WARNING")
    began = time.perf_counter()
    bench = Bench(args, sizes)
    bench.run()
    elapsed = time.perf_counter() - began
    title = (
        f"VKP benchmarks{' (smoke: tiny sizes, no figure means anything)' if args.smoke else ''}"
        f" — {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end,"
        f" {elapsed:.0f} s; ratios against the no-op server of this run"
    )
    rows = bench.ordered_rows()
    print_table(rows, title)
    if args.json:
        run = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "smoke": args.smoke,
            "seconds": elapsed,
            "cores": os.cpu_count(),
            "load_average_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "concurrency": args.concurrency,
            "sizes": sizes.__dict__,
            "groups": args.only,
            "databases": args.databases,
        }
        write_json(args.json, rows, run)


if __name__ == "__main__":
    main()
