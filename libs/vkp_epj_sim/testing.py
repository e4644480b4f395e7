"""The simulator as a real process, for tests: `python -m vkp_epj_sim --port 0`, the ports read
from its stdout, its log (stderr) in a file.

    sim = SimulatorProcess(tmp_path, own_listeners=["5099"])
    try:
        sim.wait_ready()
        ...  # httpx against sim.base_url("4699"), sim.own_base_url("5099"), sim.url + "/_control"
    finally:
        sim.stop()
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class SimulatorProcess:
    """Starts at once; `wait_ready` reads the ports. `data_dir` holds the SQLite file and the
    log unless `database` is given."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        own_listeners: Sequence[str] = (),
        seed: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.own_listeners = tuple(own_listeners)
        self.log_path = data_dir / "epj-sim.log"
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "vkp_epj_sim", "--port", "0", "--data-dir", str(data_dir)]
        command += [f"--own-listener={number}=0" for number in self.own_listeners]
        if seed is not None:
            command.append(f"--seed={seed}")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "OTEL_SDK_DISABLED": "true", **(env or {})},
        )
        self.port = 0
        self.ports: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, municipality: str) -> str:
        """The municipality's FHIR base on the main listener."""
        return f"{self.url}/{municipality}/fhir"

    def own_base_url(self, municipality: str) -> str:
        """The municipality's FHIR base on its own listener."""
        return f"http://127.0.0.1:{self.ports[municipality]}/{municipality}/fhir"

    def _read_lines(self, count: int, timeout: float) -> list[str]:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        text = b""
        deadline = time.monotonic() + timeout
        try:
            while text.count(b"\n") < count:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    self.kill()
                    raise TimeoutError(f"the simulator printed no ports: {self.logs()[-2000:]}")
                chunk = os.read(self.process.stdout.fileno(), 256)
                if not chunk:
                    raise RuntimeError(f"the simulator exited: {self.logs()[-2000:]}")
                text += chunk
        finally:
            selector.close()
        return text.decode().splitlines()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Reads the main port and the own listeners' ports; they are bound once printed."""
        lines = self._read_lines(1 + len(self.own_listeners), timeout)
        self.port = int(lines[0])
        for line in lines[1:]:
            number, port = line.split()
            self.ports[number] = int(port)

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (SIGKILL after `timeout`)."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return self.process.wait()
        finally:
            self._close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
