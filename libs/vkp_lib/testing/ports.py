"""The guard that keeps a test run off a hub someone is running: `make run` listens on the
default ports (the five services on 50051-50055, the EPJ simulator on 8085), and the tests use only
servers they started themselves on free ports.

For the whole run, the plugin listens on every default port that is free, with a listener that
takes each connection, notes its port and closes it. Any connection at all is a test reaching for
the default ports — a hub's, had one been running — and fails the run. A port already taken (a
hub is running) cannot be watched; the summary says so.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from vkp_cli.main import DEFAULT_PORTS, EPJ_SIMULATOR_PORT

#: Where `make run` listens.
HUB_PORTS = (*DEFAULT_PORTS.values(), EPJ_SIMULATOR_PORT)
#: Watch these ports instead (comma-separated): how the guard's own test shows it at work
#: without touching the real default ports.
PORTS_VARIABLE = "VKP_TEST_WATCHED_PORTS"


def watched_ports() -> tuple[int, ...]:
    chosen = os.environ.get(PORTS_VARIABLE, "")
    return tuple(int(p) for p in chosen.split(",")) if chosen else HUB_PORTS


class PortGuard:
    """Listens on `ports` of 127.0.0.1 (those that are free); `poll` takes the connections that
    arrived since (the kernel holds them, accepted, in each listener's backlog) and notes their
    ports. No thread: what a test did is known as soon as it ends."""

    def __init__(self, ports: Iterable[int] | None = None, host: str = "127.0.0.1") -> None:
        self.ports = tuple(watched_ports() if ports is None else ports)
        self.host = host
        self.watched: list[int] = []
        self.taken: list[int] = []
        #: The port of each connection taken, in order.
        self.touched: list[int] = []
        self._listeners: dict[int, socket.socket] = {}

    def start(self) -> None:
        for port in self.ports:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.bind((self.host, port))
            except OSError:
                listener.close()
                self.taken.append(port)
                continue
            listener.listen(128)
            listener.setblocking(False)
            self._listeners[port] = listener
            self.watched.append(port)

    def poll(self) -> list[int]:
        """The ports of the connections that arrived since the last poll (also in `touched`)."""
        found: list[int] = []
        for port, listener in self._listeners.items():
            while True:
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    break
                connection.close()
                found.append(port)
        self.touched += found
        return found

    def stop(self) -> None:
        self.poll()
        for listener in self._listeners.values():
            listener.close()
        self._listeners.clear()
