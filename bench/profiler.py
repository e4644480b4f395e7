"""Where a service's time goes under its bench load: py-spy (with --native, so grpc's and
SQLite's C code shows too) samples the service's process while the bench drives it, then this
prints the CPU per call, a cost table in microseconds per call by part (gRPC, the hub's code,
SQLAlchemy, SQLite, protobuf, ...) and the top functions, and keeps the collapsed stacks
(flamegraph.pl, speedscope.app and inferno read them).

    .venv/bin/python bench/profiler.py runner          # the runner, a no-op with a vendor token
    .venv/bin/python bench/profiler.py bare            # the same no-op on a bare grpc.aio server
    .venv/bin/python bench/profiler.py runner --pyinstrument   # its Python call tree instead
    .venv/bin/python bench/profiler.py ingest          # SubmitEvent, 16 in flight (SQLite)
    .venv/bin/python bench/profiler.py ingest-batch --database postgresql
    .venv/bin/python bench/profiler.py audit           # Record awaited by 16 callers
    .venv/bin/python bench/profiler.py journaling --rate 500 --seconds 10
    .venv/bin/python bench/profiler.py lookup          # GetAlarmContext cache hits, 16 in flight
    .venv/bin/python bench/profiler.py lookup-patient  # GetPatient cache hits

The lookup targets also print the CPU per call of the processes a lookup waits on (audit,
ingest, registry, Redis), so the whole cost of a call shows, not only lookup's part; with
`--sample ingest` (or audit, registry) that process is the one sampled under the same load.

Each part of the cost table is the samples whose innermost frame of a known part is that part's
(its own code, not what it calls), times the process's CPU seconds over the samples, over the
calls answered. py-spy pauses the process for each sample (unless --nonblocking), so the
figures of a profiled run are a little lower than the bench's.

`--pyinstrument` (bare and runner only) runs the server under pyinstrument instead and prints
its call tree of the Python code, awaits included, when the server stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from audit_bench import measure_audit
from e2e_bench import Drain, measure_e2e
from hub import POSTGRESQL, SQLITE, Hub, running_hub
from idle_bench import cpu_seconds
from ingest_bench import batch_load, unary_load
from lookup_bench import ALARM, PATIENT, hit_load, kind_patients, open_alarms
from rich.console import Console
from rich.table import Table
from runner_bench import NoopLoad, NoopServer, measure_noop

from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes

TARGETS = (
    "bare",
    "runner",
    "ingest",
    "ingest-batch",
    "audit",
    "journaling",
    "lookup",
    "lookup-patient",
)
#: The parts of the cost table, by the path (or library) of a frame; the first that matches.
PARTS: tuple[tuple[str, str], ...] = (
    ("SQLite (C)", r"libsqlite3|_sqlite3"),
    ("aiosqlite (its thread)", r"/aiosqlite/"),
    ("asyncpg", r"/asyncpg/"),
    ("SQLAlchemy", r"/sqlalchemy/"),
    ("protovalidate / CEL", r"/protovalidate/|/celpy/|/cel_|/lark/"),
    ("protobuf", r"/google/protobuf/|_upb|_message\."),
    ("tokens (joserfc, cryptography)", r"/joserfc/|/cryptography/|libcrypto|libssl"),
    ("OpenTelemetry", r"/opentelemetry/"),
    ("logging (structlog)", r"/structlog/|/logging/"),
    ("pydantic", r"/pydantic"),
    ("HTTP client (httpx)", r"/httpx/|/httpcore/|/h11/|/anyio/"),
    ("hub: vkp_lib", r"/libs/vkp_lib/"),
    ("hub: the service's code", r"/services/\w+/vkp_\w+/"),
    ("gRPC (cygrpc, grpc.aio)", r"/grpc/|cygrpc|libgrpc"),
    ("asyncio event loop", r"/asyncio/|_asynciomodule|selectors\.py|libuv|epoll"),
)
_FRAME = re.compile(r"^(?P<name>.*) \((?P<where>[^()]*)\)$")
#: A thread waiting, not working: py-spy --native counts a thread blocked in these as active.
_WAITING = re.compile(
    r"^(epoll_wait|epoll_pwait|e?poll|ppoll|select|pselect6?|nanosleep|clock_nanosleep|usleep|"
    r"pthread_cond_\w*wait\w*|sem_\w*wait|__?futex\w*|PyThread_acquire_lock_timed|"
    r"select_epoll_poll\w*) "
)


def waiting(stack: tuple[str, ...]) -> bool:
    """Blocked in a wait (an idle poller, a worker on its queue, a lock), by its innermost
    frames; a bare `syscall` leaf is grpc's futex wait."""
    return stack[-1].startswith("syscall ") or any(_WAITING.match(f) for f in stack[-4:])


@dataclass(frozen=True)
class Profile:
    stacks: Counter[tuple[str, ...]]  # root first; the working ones
    waited: int  # samples of waiting threads, left out
    cpu_seconds: float
    wall_seconds: float
    calls: int

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def us_per_call(self, samples: int) -> float:
        if not self.samples or not self.calls:
            return float("nan")
        return samples / self.samples * self.cpu_seconds / self.calls * 1e6


def read_collapsed(path: Path) -> tuple[Counter[tuple[str, ...]], int]:
    """The working stacks, and how many samples were of waiting threads."""
    stacks: Counter[tuple[str, ...]] = Counter()
    waited = 0
    for line in path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stack = tuple(frames.split(";"))
            if waiting(stack):
                waited += int(count)
            else:
                stacks[stack] += int(count)
    return stacks, waited


def _where(frame: str) -> str:
    match = _FRAME.match(frame)
    return match.group("where") if match else frame


def part_of(stack: tuple[str, ...]) -> str:
    """The part of the innermost frame that belongs to a known part."""
    for frame in reversed(stack):
        where = _where(frame)
        for part, pattern in PARTS:
            if re.search(pattern, where):
                return part
    return "interpreter, libc, other"


def _short(frame: str) -> str:
    """A frame as printed: paths from the package on; native code without symbols by library."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    where = re.sub(r"^.*/(site-packages|lib/python3\.\d+|libs|services)/", "", match["where"])
    name = "(no symbol)" if re.fullmatch(r"0x[0-9a-f]+", match["name"]) else match["name"]
    return f"{name} ({where})"


def _ours(frame: str) -> bool:
    return re.search(r"/libs/vkp_lib/|/services/\w+/vkp_\w+/", _where(frame)) is not None


def report(profile: Profile, title: str, top: int, console: Console) -> None:
    console.print(
        f"[bold]{title}[/bold]: {profile.calls:,} calls in {profile.wall_seconds:.1f} s, the "
        f"process used {profile.cpu_seconds:.2f} CPU s = "
        f"{profile.cpu_seconds / max(profile.calls, 1) * 1e6:,.0f} µs per call; "
        f"{profile.samples:,} samples of working threads ({profile.waited:,} of waiting ones "
        "left out)"
    )
    parts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in profile.stacks.items():
        parts[part_of(stack)] += count
        own[_short(stack[-1])] += count
        for frame in {_short(f) for f in stack if _ours(f)}:
            inclusive[frame] += count
    table = Table(title="cost per call, by part (its own code)", title_justify="left")
    for column in ("part", "share", "µs per call"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for part, count in parts.most_common():
        share = count / profile.samples
        table.add_row(part, f"{share:.1%}", f"{profile.us_per_call(count):,.1f}")
    console.print(table)
    for name, counter in (("own time", own), ("the hub's, with what they call", inclusive)):
        functions = Table(title=f"top functions, {name}", title_justify="left")
        for column in ("function", "share", "µs per call"):
            functions.add_column(column, justify="left" if column == "function" else "right")
        for frame, count in counter.most_common(top):
            functions.add_row(
                frame[:150], f"{count / profile.samples:.1%}", f"{profile.us_per_call(count):,.1f}"
            )
        console.print(functions)


@contextlib.contextmanager
def sampling(pid: int, seconds: int, out: Path, nonblocking: bool) -> Iterator[None]:
    """py-spy records `pid` for `seconds` while the block runs (the block should run longer)."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is missing: make install (it is a dev dependency)")
    command = [py_spy, "record", "--function", "--full-filenames"]
    command += ["-r", "200", "-f", "raw", "-o", str(out), "-p", str(pid), "-d", str(seconds)]
    # py-spy reads native stacks only while the process is paused.
    command.append("--nonblocking" if nonblocking else "--native")
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, errors = recorder.communicate(timeout=seconds + 30)
        if recorder.returncode != 0:
            raise SystemExit(f"py-spy failed: {errors.decode(errors='replace')[-2000:]}")


def _profiled(pid: int, args: argparse.Namespace, out: Path, load: Callable[[], int]) -> Profile:
    """Runs `load` (it returns the calls answered) with py-spy on `pid`; the CPU of `pid`."""
    seconds = max(1, round(args.seconds))
    began_cpu, began = cpu_seconds(pid), time.perf_counter()
    with sampling(pid, seconds, out, args.nonblocking):
        calls = load()
    stacks, waited = read_collapsed(out)
    return Profile(stacks, waited, cpu_seconds(pid) - began_cpu, time.perf_counter() - began, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seconds", type=float, default=8.0, help="of sampling (8)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=500.0, help="journaling: events/s (500)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (25)")
    parser.add_argument("--out", type=Path, help="folder of the collapsed stacks (a temp one)")
    parser.add_argument(
        "--nonblocking", action="store_true", help="py-spy never pauses it (Python frames only)"
    )
    parser.add_argument(
        "--sample",
        choices=["lookup", "ingest", "audit", "registry"],
        default="lookup",
        help="lookup targets: the process sampled (lookup; ingest, audit or registry: what it"
        " waits on, its cost per lookup)",
    )
    parser.add_argument(
        "--pyinstrument", action="store_true", help="bare, runner: pyinstrument's call tree"
    )
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="vkp-profile-"))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{args.target}-{args.database}.collapsed.txt"
    # The load outlasts the sampling: py-spy takes a moment to attach.
    load_seconds = max(1, round(args.seconds)) + 1.5
    console = Console(width=180)
    if args.target in ("bare", "runner"):
        if args.pyinstrument:
            _pyinstrument(args, folder, load_seconds)
            return
        profile, title = _noop_profile(args, folder, out, load_seconds)
    else:
        database = SQLITE if args.database == "sqlite" else POSTGRESQL
        with running_hub(database) as hub:
            pid, title, work = _hub_load(hub, args, load_seconds)
            profile = _profiled(pid, args, out, work)
    report(profile, title, args.top, console)
    console.print(f"collapsed stacks: {out} (speedscope.app, flamegraph.pl or inferno read them)")


def _noop_server(
    args: argparse.Namespace, folder: Path, wrapper: Sequence[str] = ()
) -> tuple[NoopServer, NoopLoad]:
    """The target's no-op server (with a vendor token for the runner) and its load."""
    if args.target == "bare":
        return NoopServer("bare", wrapper=wrapper), NoopLoad(0, args.concurrency)
    issuer = DevelopmentIssuer.open(folder / "issuer")
    token = issuer.vendor_token("bench-client", [Scopes.INGEST])
    server = NoopServer("runner-auth", issuer.env(), wrapper)
    return server, NoopLoad(0, args.concurrency, (("authorization", f"Bearer {token}"),))


def _noop_profile(
    args: argparse.Namespace, folder: Path, out: Path, seconds: float
) -> tuple[Profile, str]:
    server, load = _noop_server(args, folder)
    load = NoopLoad(seconds, load.concurrency, load.metadata)
    try:
        address = server.address
        profile = _profiled(
            server.process.pid, args, out, lambda: measure_noop(address, load).calls
        )
    finally:
        server.stop()
    token = " with a vendor token" if args.target == "runner" else ""
    return profile, f"{args.target}, a no-op{token}, {args.concurrency} in flight"


def _pyinstrument(args: argparse.Namespace, folder: Path, seconds: float) -> None:
    """The no-op server under pyinstrument, its text report printed once it stops."""
    report = folder / f"{args.target}.pyinstrument.txt"
    wrapper = ["-m", "pyinstrument", "-r", "text", "-o", str(report)]
    server, load = _noop_server(args, folder, wrapper)
    try:
        calls = measure_noop(server.address, NoopLoad(seconds, load.concurrency, load.metadata))
    finally:
        server.stop()
    print(report.read_text())
    print(f"{calls.calls:,} calls in {calls.seconds:.1f} s; the report: {report}")


def _hub_load(
    hub: Hub, args: argparse.Namespace, seconds: float
) -> tuple[int, str, Callable[[], int]]:
    """The process to sample, its title and its load, for a target in the whole hub."""
    on = f"({hub.database})"
    if args.target == "ingest":
        return (
            hub.ingest_alone.process.pid,
            f"ingest SubmitEvent, {args.concurrency} in flight {on}",
            lambda: asyncio.run(unary_load(hub, seconds, args.concurrency, 10_000)).calls,
        )
    if args.target == "ingest-batch":
        return (
            hub.ingest_alone.process.pid,
            f"ingest SubmitEvents of 500 {on}; a call is a batch",
            lambda: asyncio.run(batch_load(hub, seconds)).calls,
        )
    if args.target in ("lookup", "lookup-patient"):
        return _lookup_load(hub, args, seconds)
    if args.target == "audit":
        return (
            hub.processes["audit"].process.pid,
            f"audit Record awaited by {args.concurrency} callers {on}; a call is a record",
            lambda: measure_audit(hub, seconds, args.concurrency, 10_000).calls,
        )
    return (
        hub.processes["journaling"].process.pid,
        f"journaling at {args.rate:g} events/s offered to the whole hub {on}; a call is a note",
        lambda: measure_e2e(hub, args.rate, seconds, Drain(10.0, 10.0, 0.5)).journaled.journaled,
    )


def _redis_pid() -> int | None:
    """The local Redis server's pid, if this machine runs one."""
    found = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True)
    pids = found.stdout.split()
    return int(pids[0]) if len(pids) == 1 else None


def _lookup_load(
    hub: Hub, args: argparse.Namespace, seconds: float
) -> tuple[int, str, Callable[[], int]]:
    """Cache hits of GetAlarmContext (`lookup`) or GetPatient (`lookup-patient`); afterwards the
    CPU per call of the processes lookup waits on."""
    kind = ALARM if args.target == "lookup" else PATIENT
    alarm_ids = asyncio.run(open_alarms(hub, kind_patients(ALARM)))
    others = {name: hub.processes[name].process.pid for name in ("audit", "ingest", "registry")}
    redis = _redis_pid()
    if redis is not None:
        others["redis"] = redis

    def work() -> int:
        before = {name: cpu_seconds(pid) for name, pid in others.items()}
        load = asyncio.run(hit_load(hub, kind, alarm_ids, seconds, args.concurrency, 10_000))
        spent = {name: cpu_seconds(pid) - before[name] for name, pid in others.items()}
        calls = max(load.calls, 1)
        print(
            f"{load.calls:,} calls, {load.rate:,.0f}/s, p50 {load.p50_ms:.1f} ms, p99 "
            f"{load.p99_ms:.1f} ms; CPU per call elsewhere: "
            + ", ".join(f"{name} {cpu / calls * 1e6:,.0f} µs" for name, cpu in spent.items())
        )
        return load.calls

    method = kind.method.rpartition("/")[2]
    sampled = "" if args.sample == "lookup" else f", {args.sample} sampled"
    title = f"lookup {method}, cache hits, {args.concurrency} in flight ({hub.database}){sampled}"
    return hub.processes[args.sample].process.pid, title, work


if __name__ == "__main__":
    main()
