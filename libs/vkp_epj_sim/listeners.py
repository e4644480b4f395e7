"""A listening socket served by an aiohttp app of its own, which can be closed and reopened on
the same port: closed, new connections are refused and open ones are closed, as when an EPJ's
server is down.

A request line may be up to `MAX_REQUEST_LINE` long, so a GET search of `MAX_VALUES` national
ids is read; a longer one is refused (400) by aiohttp, whose log of it is cut to the error's
kind: the text it logs holds the start of the line, a query string's values with it.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from aiohttp import web

#: The longest request line read (method, URL, version): a GET search of the most values a
#: parameter may have (`MAX_VALUES` national ids with their system) fits.
MAX_REQUEST_LINE = 64 * 1024


class _KindOnly(logging.Filter):
    """Logs a request aiohttp failed to read or answer by its error's kind, never its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            record.msg, record.args = (
                "request failed in the server: %s",
                (type(record.exc_info[1]).__name__,),
            )
            record.exc_info, record.exc_text = None, None
        return True


_server_log = logging.getLogger("vkp_epj_sim.server")
_server_log.addFilter(_KindOnly())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """`open` binds (port 0 picks a free one, kept for reopening); `close` stops accepting and
    closes the connections, giving requests in flight `grace` seconds."""

    def __init__(
        self, make_app: Callable[[], web.Application], host: str, port: int, grace: float = 1.0
    ) -> None:
        self._make_app = make_app
        self.host = host
        self.port = port
        self._grace = grace
        self._runner: web.AppRunner | None = None

    @property
    def is_open(self) -> bool:
        return self._runner is not None

    async def open(self) -> int:
        if self._runner is not None:
            return self.port
        runner = web.AppRunner(
            self._make_app(),
            access_log=None,
            logger=_server_log,
            max_line_size=MAX_REQUEST_LINE,
            shutdown_timeout=self._grace,
        )
        await runner.setup()
        try:
            sock = _bind(self.host, self.port)
        except BaseException:
            await runner.cleanup()
            raise
        try:
            await web.SockSite(runner, sock, shutdown_timeout=self._grace).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.port = sock.getsockname()[1]
        self._runner = runner
        return self.port

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
