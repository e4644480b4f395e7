"""The no-op figures checked with a load generator written in C: h2load (Debian's
nghttp2-client) sending one pre-encoded gRPC request body over one connection with the same
number of streams in flight as the Python client, so the Python client is seen not to be what
limits the baseline and the runner.

h2load counts an HTTP 200 as a success, and gRPC answers its errors with 200 too; an answered
no-op carries a 5-byte message, a failed one none, so the data received tells the two apart.
h2load gives no percentiles: the mean latency stands in the details.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from load import children_cpu_seconds

#: A gRPC message frame: not compressed, length 0 (an encoded google.protobuf.Empty).
EMPTY_FRAME = b"\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class H2Figures:
    rate: float
    succeeded: int
    mean_ms: float
    client_cpu: float


def find_h2load(install: bool) -> tuple[str | None, str]:
    """The h2load binary, installed with apt-get when `install` and it is missing (as root); or
    None and why not."""
    found = shutil.which("h2load")
    if found:
        return found, ""
    if not install:
        return None, "h2load is not installed (apt-get install nghttp2-client)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "h2load is missing and apt-get cannot install it here (not root, or no apt)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "install", "-y", "-q", "nghttp2-client"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "nghttp2-client"],
    ):
        done = subprocess.run(command, capture_output=True, env=env, timeout=300, check=False)
        if command[1] == "install" and done.returncode == 0:
            break
    found = shutil.which("h2load")
    if found:
        return found, ""
    return None, "apt-get could not install nghttp2-client (no network or no package)"


def _value(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"h2load's output has no {pattern!r}: {text[-1000:]}")
    return match.group(1)


def _ms(text: str) -> float:
    number = float(re.sub(r"[a-z]+$", "", text))
    if text.endswith("us"):
        return number / 1000
    if text.endswith("ms"):
        return number
    return number * 1000  # seconds


def run_h2load(
    h2load: str,
    address: str,
    method: str,
    seconds: float,
    concurrency: int,
    metadata: tuple[tuple[str, str], ...] = (),
    frame: bytes = EMPTY_FRAME,
) -> H2Figures:
    """`concurrency` streams in flight on one connection for `seconds` (after a warm-up)."""
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "request.bin"
        body.write_bytes(frame)
        headers = [("content-type", "application/grpc"), ("te", "trailers"), *metadata]
        command = [
            h2load,
            "-c1",
            f"-m{concurrency}",
            "-t1",
            f"-D{max(100, round(seconds * 1000))}ms",
            f"--warm-up-time={min(500, max(100, round(seconds * 100)))}ms",
            "-d",
            str(body),
            *[f"-H{name}: {value}" for name, value in headers],
            f"http://{address}{method}",
        ]
        cpu = children_cpu_seconds()
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
        client_cpu = children_cpu_seconds() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed: {done.stderr[-1000:]}")
    out = done.stdout
    finished = _ms(_value(r"^finished in ([\d.]+[a-z]+),", out)) / 1000
    rate = float(_value(r"^finished in \S+, ([\d.]+) req/s", out))
    succeeded = int(_value(r"^requests: .* (\d+) succeeded", out))
    data = int(_value(r"^traffic: .*\((\d+)\) data", out))
    if succeeded == 0 or data < len(frame) * succeeded:
        raise RuntimeError(f"h2load's calls were not answered with a message: {out[-1000:]}")
    mean = _ms(_value(r"^time for request:\s+\S+\s+\S+\s+(\S+)", out))
    return H2Figures(rate, succeeded, mean, client_cpu / finished)
