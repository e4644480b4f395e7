"""`vkp event`: send an event to ingest as a vendor would, and follow it into the record.

vkp event submit --token T [--event-id ID] [FILE]   one event in protobuf JSON (stdin without FILE)
vkp event status --token T [--wait] EVENT_ID        where it is: REGISTERED ... JOURNALED

The event is `vkp.common.v1.Event` in the protobuf JSON mapping (camelCase names, enum value
names): what any gRPC client with server reflection (grpcurl, for one) would send. The command
fills in what a quick try leaves out: `eventId` (from --event-id, else a new UUID) and
`occurredTime` (now). The token is a vendor's (`vkp token issue --client-id ... --org ...`).
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

from vkp.common.v1 import common_pb2, event_pb2
from vkp.ingest.v1 import ingest_pb2 as pb
from vkp.ingest.v1 import ingest_pb2_grpc
from vkp_cli.calls import call

event_app = typer.Typer(help="Send events to ingest and follow them.", no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True)
SERVICE = "vkp.ingest.v1.IngestService"
Metadata = tuple[tuple[str, str], ...]

Target = Annotated[
    str, typer.Option(envvar="VKP_INGEST_TARGET", help="The ingest service, host:port.")
]
Token = Annotated[str, typer.Option(envvar="VKP_TOKEN", help="The vendor's access token.")]
DEFAULT_TARGET = "127.0.0.1:50052"
#: States after which an event moves no more.
FINAL = {
    common_pb2.EVENT_STATE_JOURNALED,
    common_pb2.EVENT_STATE_DEAD,
    common_pb2.EVENT_STATE_REJECTED,
}


def read_event(text: str, event_id: str, now: datetime) -> event_pb2.Event:
    """The event in `text` (protobuf JSON), its id and time filled in where left out."""
    event = json_format.Parse(text, event_pb2.Event())
    if event_id:
        event.event_id = event_id
    elif not event.event_id:
        event.event_id = str(uuid.uuid4())
    if not event.HasField("occurred_time"):
        event.occurred_time.FromDatetime(now)
    return event


def _json(message: Message) -> str:
    return json_format.MessageToJson(message, indent=2)


@event_app.command()
def submit(
    file: Annotated[
        Path | None, typer.Argument(help="The event, protobuf JSON; standard input without it.")
    ] = None,
    event_id: Annotated[
        str, typer.Option(help="The vendor's event id (default: the file's, else a new UUID).")
    ] = "",
    token: Token = "",
    target: Target = DEFAULT_TARGET,
) -> None:
    """Submit one event; prints the receipt (REGISTERED once it is committed)."""
    if not token:
        raise typer.BadParameter("a vendor's token is needed (--token or $VKP_TOKEN)")
    text = file.read_text() if file else sys.stdin.read()
    try:
        event = read_event(text, event_id, datetime.now(UTC))
    except json_format.ParseError as exc:
        err.print(f"[red]not an event in protobuf JSON:[/red] {exc}")
        raise typer.Exit(2) from None

    async def send(
        stub: ingest_pb2_grpc.IngestServiceAsyncStub, metadata: Metadata
    ) -> pb.SubmitEventResponse:
        return await stub.SubmitEvent(pb.SubmitEventRequest(event=event), metadata=metadata)

    answer = call(target, SERVICE, ingest_pb2_grpc.IngestServiceStub, token, send)
    out.print(_json(answer.receipt))


@event_app.command()
def status(
    event_id: Annotated[str, typer.Argument(help="The vendor's event id.")],
    wait: Annotated[
        bool, typer.Option(help="Print each new state until JOURNALED, DEAD or REJECTED.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="How long --wait waits, in seconds.")] = 60.0,
    token: Token = "",
    target: Target = DEFAULT_TARGET,
) -> None:
    """Where an event is on its way into the patient's record."""
    if not token:
        raise typer.BadParameter("a vendor's token is needed (--token or $VKP_TOKEN)")
    request = pb.GetEventStatusRequest(event_id=event_id)

    async def get(
        stub: ingest_pb2_grpc.IngestServiceAsyncStub, metadata: Metadata
    ) -> pb.GetEventStatusResponse:
        return await stub.GetEventStatus(request, metadata=metadata)

    def ask() -> pb.EventStatus:
        return call(target, SERVICE, ingest_pb2_grpc.IngestServiceStub, token, get).status

    current = ask()
    if not wait:
        out.print(_json(current))
        return
    deadline = time.monotonic() + timeout
    shown = common_pb2.EVENT_STATE_UNSPECIFIED
    while True:
        name = common_pb2.EventState.Name(current.state).removeprefix("EVENT_STATE_")
        if current.state != shown:
            shown = current.state
            out.print(f"{current.state_time.ToJsonString()}  {name}")
        if shown in FINAL:
            raise typer.Exit(0 if shown == common_pb2.EVENT_STATE_JOURNALED else 1)
        if time.monotonic() > deadline:
            err.print(f"[red]still {name} after {timeout:g} s[/red]")
            raise typer.Exit(1)
        time.sleep(0.2)
        current = ask()
