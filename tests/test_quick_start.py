"""The README's quick start, as printed, against a hub started as `make run` starts it (`vkp run`),
in a folder of the test's own and on ports of its own: the token is accepted, the event is
registered and journaled, its note is on the simulator's page, and the run logs no error or
warning on the way."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> str:
    """The first `sh` block under the README's "Quick start" heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the quick start has no sh block"
    return found.group(1)


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free ports."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
        return first
    raise RuntimeError("no free ports")


@dataclass
class RunningHub:
    folder: Path
    first_port: int
    epj_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    """`vkp run` in an empty folder (its `.vkp/` goes there), with the repository's `.venv`
    linked in, so the README's `.venv/bin/vkp` is found as in a checkout."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    first = _free_ports(5)
    epj = _free_ports(1)
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VKP_", "OTEL_EXPORTER_OTLP"))}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [".venv/bin/vkp", "run", "--first-port", str(first), "--epj-port", str(epj)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**env, "OTEL_SDK_DISABLED": "true"},
        )
    hub = RunningHub(tmp_path, first, epj, process, log)
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops the hub." not in hub.logs():
            assert process.poll() is None, hub.logs()[-3000:]
            assert time.monotonic() < deadline, hub.logs()[-3000:]
            time.sleep(0.2)
        assert "sandbox seeded" in hub.logs()
        yield hub
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _problems(logs: str) -> list[str]:
    """Log lines at warning or error level, and lines that are not JSON (a raw traceback)."""
    problems = []
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue  # the table vkp run prints for people
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(line)
            continue
        if record.get("level") in ("warning", "error", "critical"):
            problems.append(line)
    return problems


@pytest.mark.timeout(120)
def test_the_readme_quick_start_journals_its_event_as_printed(hub: RunningHub) -> None:
    commands = quick_start_commands()
    assert "dosetta-dispenser" in commands  # a sandbox vendor's client id

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=hub.folder,
        env={
            **os.environ,
            "VKP_INGEST_TARGET": f"127.0.0.1:{hub.first_port + 1}",
        },
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    receipt = json.loads(done.stdout[: done.stdout.index("}") + 1])
    assert receipt["state"] == "EVENT_STATE_REGISTERED"
    assert receipt["eventId"].startswith("quickstart-")
    assert done.stdout.rstrip().endswith("JOURNALED")
    page = httpx.get(f"http://127.0.0.1:{hub.epj_port}/", timeout=10).text
    assert "Morgendose" in page
    assert _problems(hub.logs()) == []
