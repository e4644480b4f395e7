"""The test run leaves a hub someone is running alone: nothing in the suite connects to the
default ports of `make run` (the plugin watches them for the whole run, `vkp_lib.testing.ports`),
and the processes tests start are sent nowhere for every service the test did not start."""

from __future__ import annotations

import socket

import pytest

from vkp_lib.settings import RuntimeSettings
from vkp_lib.testing import plugin
from vkp_lib.testing.ports import HUB_PORTS, PORTS_VARIABLE, PortGuard
from vkp_lib.testing.processes import NOWHERE, TEST_ENV


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_this_run_watches_every_default_port_of_a_hub() -> None:
    """Each of `make run`'s ports is either watched, or taken by a hub that is running (the
    summary names those)."""
    guard = plugin._ports
    assert guard is not None
    assert set(HUB_PORTS) == {50051, 50052, 50053, 50054, 50055, 8085}
    assert sorted(guard.watched + guard.taken) == sorted(HUB_PORTS)


def test_the_guard_notes_each_connection_to_a_watched_port() -> None:
    port = _free_port()
    guard = PortGuard([port])
    guard.start()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert guard.poll() == [port, port]
        assert guard.poll() == []
    finally:
        guard.stop()
    assert guard.watched == [port]
    assert guard.touched == [port, port]


def test_a_port_in_use_is_not_watched_but_named_as_taken() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        guard = PortGuard([port])
        guard.start()
        guard.stop()
    assert (guard.watched, guard.taken) == ([], [port])


def test_a_test_that_reaches_a_watched_port_fails_and_so_does_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    pytester.makepyfile(
        test_inner=f"""
import socket

def test_quiet():
    pass

def test_reaches_the_hub():
    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
"""
    )
    monkeypatch.setenv(PORTS_VARIABLE, str(port))
    result = pytester.runpytest_subprocess("-p", "vkp_lib.testing.plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*connected to the default ports of a hub: [[]{port}[]]*",
            "*FAILED: the tests connected*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_service_processes_of_tests_are_sent_nowhere_for_services_they_did_not_start() -> None:
    """Every service a process can be pointed at (each `*_target` of the runtime settings) is
    pointed nowhere, unless the test that starts the process gives its own."""
    targets = {k: v for k, v in TEST_ENV.items() if k.endswith("_TARGET")}
    assert targets == {
        f"VKP_{name.upper()}": NOWHERE
        for name in RuntimeSettings.model_fields
        if name.endswith("_target")
    }
    assert "VKP_INGEST_TARGET" in targets  # lookup asks ingest whether an alarm is open
    port = int(NOWHERE.rsplit(":", 1)[1])
    assert port not in HUB_PORTS
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
