"""An idle hub's CPU: the five services started and seeded, left alone for `settle` seconds, then
each one's CPU time (user + system ticks of every thread, /proc/<pid>/stat) over `seconds`, as
a share of one core. Work should be waited for, not polled: the target is under 2 % in all."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hub import SERVICES, Hub

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    # The command name (field 2) may hold spaces; the fields after its ")" are fixed.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14 and 15


def measure_idle(hub: Hub, settle: float, seconds: float) -> dict[str, float]:
    """Each service's share of one core while idle."""
    time.sleep(settle)
    pids = {name: hub.processes[name].process.pid for name in SERVICES}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    began = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - began
    return {name: (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}
