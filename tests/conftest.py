"""Fixtures of the cross-service tests: the five services as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vkp_lib.testing.collector import Collector
from vkp_lib.testing.processes import ServiceProcess, stop_all
from vkp_lib.testing.sensitive import SensitiveData

pytest_plugins = ["pytester"]

SERVICES = ["registry", "ingest", "journaling", "lookup", "audit"]


@pytest.fixture(scope="session")
def hub(
    collector_env: dict[str, str], auth_env: dict[str, str], otel_collector: Collector
) -> Iterator[dict[str, ServiceProcess]]:
    """All five services, started once for the session with `vkp serve NAME --port 0`."""
    processes: dict[str, ServiceProcess] = {}
    env = {**collector_env, **auth_env}
    try:
        # The registry and audit first, then journaling: the others call them.
        for name in ("registry", "audit"):
            processes[name] = ServiceProcess(name, env)
        for process in processes.values():
            process.wait_serving()
        env |= {
            "VKP_REGISTRY_TARGET": processes["registry"].address,
            "VKP_AUDIT_TARGET": processes["audit"].address,
        }
        processes["journaling"] = ServiceProcess("journaling", env)
        processes["journaling"].wait_serving()
        env["VKP_JOURNALING_TARGET"] = processes["journaling"].address
        for name in SERVICES:
            if name not in processes:
                processes[name] = ServiceProcess(name, env)
        for process in processes.values():
            process.wait_serving()
        yield processes
    finally:
        codes = dict(zip(processes, stop_all(*processes.values()), strict=True))
    data = SensitiveData.of()
    leaks = [leak for p in processes.values() for leak in data.find(p.logs(), f"{p.name} logs")]
    assert not leaks, f"health data in service logs: {leaks}"
    assert all(code == 0 for code in codes.values()), codes
