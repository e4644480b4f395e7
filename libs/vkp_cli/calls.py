"""One gRPC call (or a few) from the command line: a channel with the service's client defaults,
the token as a bearer, and a failed call printed as its code, ErrorInfo reason, message and
field violations on stderr, with exit code 1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import typer
from rich.console import Console
from rich.markup import escape

from vkp_lib.clients import insecure_channel
from vkp_lib.status import bad_request, error_info

T = TypeVar("T")
S = TypeVar("S")
err = Console(stderr=True)


def call(
    target: str,
    service: str,
    stub: Callable[[grpc.aio.Channel], S],
    token: str,
    work: Callable[[S, Any], Awaitable[T]],
) -> T:
    """Runs `work(stub, metadata)` against `service` at `target`."""
    metadata = (("authorization", f"Bearer {token}"),)

    async def main() -> T:
        async with insecure_channel(target, service) as channel:
            return await work(stub(channel), metadata)

    try:
        return asyncio.run(main())
    except grpc.aio.AioRpcError as exc:
        info = error_info(exc)
        reason = f" ({info.reason})" if info else ""
        err.print(f"[red]{exc.code().name}{reason}:[/red] {escape(exc.details() or '')}")
        violations = bad_request(exc)
        for violation in violations.field_violations if violations else ():
            err.print(f"  {escape(violation.field)}: {escape(violation.description)}")
        raise typer.Exit(1) from None
