"""The no-op figures in instructions, which the machine's other work does not change: each
no-op server (bare, and the runner with a vendor token) runs under valgrind's callgrind; after a
warm-up its counters are zeroed (`callgrind_control -z`), `calls` no-op calls are made at 16 in
flight, and the counters dumped (`callgrind_control -d`): the instructions of every thread of the
server over those calls, per call. Under valgrind a server starts in tens of seconds and runs some
fifty times slower, so the group is run only when asked (`--only ...,instructions`)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from load import closed_loop, raw_call
from runner_bench import METHOD, NoopLoad, NoopServer, measure_noop


@dataclass(frozen=True)
class Instructions:
    calls: int
    instructions: int

    @property
    def per_call(self) -> float:
        return self.instructions / self.calls


def find_valgrind() -> tuple[str | None, str]:
    """valgrind and callgrind_control, or why not."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        return None, "valgrind (callgrind_control) is not installed"
    return valgrind, ""


def _totals(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def count_instructions(
    kind: str,
    env: dict[str, str] | None,
    metadata: tuple[tuple[str, str], ...],
    calls: int,
    concurrency: int,
) -> Instructions:
    """The instructions the no-op server `kind` runs for `calls` calls (after a warm-up)."""
    with tempfile.TemporaryDirectory(prefix="vkp-callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
        server = NoopServer(kind, env, prefix=prefix)
        try:
            address = server.address
            measure_noop(address, NoopLoad(0.0, concurrency, metadata))  # its warm-up only
            pid = str(server.process.pid)
            subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)

            async def load() -> int:
                async with grpc.aio.insecure_channel(address) as channel:
                    done = await closed_loop(
                        raw_call(channel, METHOD),
                        [b""] * calls,
                        float("inf"),
                        concurrency,
                        metadata=metadata,
                    )
                    return done.calls

            answered = asyncio.run(load())
            subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
            dumps = sorted(Path(folder).glob("callgrind.out.*.*"))
            if not dumps:
                raise RuntimeError("callgrind wrote no dump")
            return Instructions(answered, _totals(dumps[-1]))
        finally:
            server.stop()
