"""Real service processes for tests: `vkp serve NAME --port 0`, the port read from stdout."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

#: An address where nothing listens (the discard port): where a test process is sent for every
#: service the test did not start, so it never falls back to the default ports (50051-50055) of a
#: hub someone is running on the same machine.
NOWHERE = "127.0.0.1:9"

#: Fast shutdown timing for tests (the production defaults are longer), and no other service
#: unless the test names it.
TEST_ENV = {
    "VKP_SHUTDOWN_DRAIN_SECONDS": "0.2",
    "VKP_SHUTDOWN_GRACE_SECONDS": "3",
    "VKP_LOG_LEVEL": "DEBUG",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_BSP_SCHEDULE_DELAY": "50",
    "VKP_REGISTRY_TARGET": NOWHERE,
    "VKP_JOURNALING_TARGET": NOWHERE,
    "VKP_INGEST_TARGET": NOWHERE,
    "VKP_AUDIT_TARGET": NOWHERE,
}


class ServiceProcess:
    """One `vkp serve` process; stderr (its JSON logs) goes to `log_path`. Start several, then
    `wait_serving` on each, so they start in parallel."""

    def __init__(self, name: str, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"vkp-{name}-", suffix=".log")[1])
        #: Where its SQLite file goes unless VKP_DB_URL says otherwise.
        self.data_dir = tempfile.mkdtemp(prefix=f"vkp-{name}-data-")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vkp_cli", "serve", name, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **TEST_ENV, "VKP_DB_DATA_DIR": self.data_dir, **(env or {})},
        )
        self.port = 0
        self._signalled = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read_port(self, timeout: float) -> int:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            if not selector.select(max(0.0, deadline - time.monotonic())):
                self.kill()
                raise TimeoutError(f"{self.name} printed no port: {self.logs()[-2000:]}")
            chunk = os.read(self.process.stdout.fileno(), 64)
            if not chunk:
                raise RuntimeError(f"{self.name} exited before binding: {self.logs()[-2000:]}")
            line += chunk
        return int(line.strip())

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Read the bound port, then wait until health says SERVING."""
        if not self.port:
            self.port = self._read_port(timeout)
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            response = stub.Check(request, timeout=timeout, wait_for_ready=True)
            if response.status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError(f"{self.name} is not serving")

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def send_sigterm(self) -> None:
        """SIGTERM, once."""
        if not self._signalled and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self._signalled = True

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (unless sent already), then wait for the exit code."""
        self.send_sigterm()
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.close()

    def close(self) -> None:
        """Closes the pipes and removes the data folder (the log stays for `logs`)."""
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def stop_all(*processes: ServiceProcess) -> list[int]:
    """SIGTERM to every process at once, so they drain in parallel; then their exit codes."""
    for process in processes:
        process.send_sigterm()
    return [process.terminate() for process in processes]
