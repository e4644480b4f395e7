"""`vkp audit`: an audit reader's and an operator's commands against the audit service.

vkp audit query --municipality 964120005 [--patient ID] [--client-id X] [--since ISO] [--until ISO]
vkp audit verify --municipality 964120005 [--from N] [--to N]        exit code 1 when not intact
vkp audit export --municipality 964120005 [--patient ID] [--output FILE]   one FHIR R4 Bundle
vkp audit checkpoint --municipality 964120005                        sign the chain head now

Calls carry a token: --token, or VKP_TOKEN, or one the development issuer signs (--issuer-dir,
made on first use) for the municipality, since an audit reader sees only their own: scope
vkp:audit.read, and vkp:admin for checkpoint. The query table shows how many patients a record
names, never who they are.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vkp.audit.v1 import audit_pb2 as pb
from vkp.audit.v1 import audit_pb2_grpc
from vkp.common.v1 import common_pb2
from vkp_cli.calls import call
from vkp_cli.token import DEFAULT_ISSUER_DIR
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes

audit_app = typer.Typer(help="Read and check the audit log.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True)
SERVICE = "vkp.audit.v1.AuditService"
DEFAULT_TARGET = "127.0.0.1:50055"
CLIENT_ID = "vkp-cli"
PAGE_SIZE = 200
T = TypeVar("T")

Municipality = Annotated[
    str, typer.Option(help="The municipality's organisation number: whose audit log.")
]
Target = Annotated[str, typer.Option(help="The audit service, host:port.")]
Token = Annotated[
    str, typer.Option(help="An audit reader's or operator's token (default: $VKP_TOKEN).")
]
IssuerDir = Annotated[
    Path, typer.Option(help="The development issuer's folder, for a token when none is given.")
]
PatientId = Annotated[str, typer.Option(help="Only records that name this national id.")]
Since = Annotated[
    str, typer.Option(help="Only records that occurred at or after this ISO 8601 time (UTC).")
]
Until = Annotated[
    str, typer.Option(help="Only records that occurred at or before this ISO 8601 time (UTC).")
]

PROBLEMS = {
    pb.CHAIN_PROBLEM_HASH_MISMATCH: "its hash is not the hash of its content: it was edited",
    pb.CHAIN_PROBLEM_BROKEN_LINK: "its previous hash is not the hash of the record before it",
    pb.CHAIN_PROBLEM_GAP: "a sequence number is missing: a record was removed",
    pb.CHAIN_PROBLEM_BAD_SIGNATURE: "a checkpoint's signature is not valid",
    pb.CHAIN_PROBLEM_CHECKPOINT_MISMATCH: "a signed checkpoint does not match the record at its "
    "sequence: history was rewritten",
}


def access_token(token: str, issuer_dir: Path, municipality: str, scope: str) -> str:
    """The token given, else $VKP_TOKEN, else one the development issuer signs for the
    municipality with `scope`."""
    token = token or os.environ.get("VKP_TOKEN", "")
    if token:
        return token
    return DevelopmentIssuer.open(issuer_dir).vendor_token(
        CLIENT_ID, [scope], organization_number=municipality
    )


def _run(
    target: str,
    token: str,
    work: Callable[[audit_pb2_grpc.AuditServiceAsyncStub, Any], Awaitable[T]],
) -> T:
    return call(target, SERVICE, audit_pb2_grpc.AuditServiceStub, token, work)


# -- pure parts --------------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """An ISO 8601 date or time; one without a zone is UTC. ValueError when it is neither."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def time_range(since: str = "", until: str = "") -> common_pb2.Period | None:
    """The span of --since and --until (either may be empty), or None when both are.
    ValueError when a time does not parse or the span ends before it begins."""
    if not since and not until:
        return None
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    if start and end and end < start:
        raise ValueError("--until is before --since")
    period = common_pb2.Period()
    if start:
        period.start_time.FromDatetime(start)
    if end:
        period.end_time.FromDatetime(end)
    return period


def national_id(value: str) -> common_pb2.NationalId | None:
    """The patient filter of a request: the id with its kind unstated (the hub derives it)."""
    return common_pb2.NationalId(value=value) if value else None


def merge_bundles(pages: Iterable[bytes]) -> Bundle:
    """One FHIR Bundle (type collection) of the entries of the pages, in order, each fullUrl
    once. The pages are validated as FHIR R4 Bundles on the way (ValueError when one is not)."""
    entries: list[BundleEntry] = []
    seen: set[str] = set()
    for page in pages:
        for entry in Bundle.model_validate_json(page).entry or []:
            if entry.fullUrl is not None:
                if entry.fullUrl in seen:
                    continue
                seen.add(entry.fullUrl)
            entries.append(entry)
    return Bundle(type="collection", entry=entries or None)


def _time(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def record_row(record: pb.AuditRecord) -> tuple[str, ...]:
    """One record as a row of the query table: the patients as a count, never their ids."""
    purpose = ""
    if record.purpose.service_code:
        purpose = common_pb2.ServiceCode.Name(record.purpose.service_code).removeprefix(
            "SERVICE_CODE_"
        )
    if record.purpose.alarm_id:
        purpose = f"{purpose} alarm {record.purpose.alarm_id}".strip()
    outcome = pb.AuditOutcome.Name(record.outcome).removeprefix("AUDIT_OUTCOME_").lower()
    if record.outcome_reason:
        outcome += f": {record.outcome_reason}"
    if record.access_basis:
        outcome += f": {record.access_basis}"
    if record.stale_data:
        outcome += " (stale data)"
    return (
        _time(record.occurred_time),
        record.actor.client_id,
        record.actor.organization_number,
        pb.AuditAction.Name(record.action).removeprefix("AUDIT_ACTION_").lower(),
        record.resource,
        purpose,
        outcome,
        str(len(record.patients)),
        str(record.sequence),
    )


COLUMNS = (
    "time",
    "client id",
    "organisation",
    "action",
    "resource",
    "purpose",
    "outcome",
    "patients",
    "sequence",
)


def _period_option(since: str, until: str) -> common_pb2.Period | None:
    try:
        return time_range(since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since/--until") from None


# -- commands ----------------------------------------------------------------------------------


async def _query(
    stub: audit_pb2_grpc.AuditServiceAsyncStub,
    metadata: Any,
    request: pb.QueryRequest,
    limit: int,
) -> list[pb.AuditRecord]:
    records: list[pb.AuditRecord] = []
    while len(records) < limit:
        request.page_size = min(limit - len(records), PAGE_SIZE)
        page = await stub.Query(request, metadata=metadata)
        records += page.records
        request.page_token = page.next_page_token
        if not request.page_token:
            break
    return records[:limit]


@audit_app.command()
def query(
    municipality: Municipality,
    patient: PatientId = "",
    client_id: Annotated[str, typer.Option(help="Only records of this client id.")] = "",
    since: Since = "",
    until: Until = "",
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 100,
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """List a municipality's audit records, newest first: a patient's access log with --patient."""
    request = pb.QueryRequest(
        municipality=municipality,
        patient=national_id(patient),
        actor_client_id=client_id,
        time_range=_period_option(since, until),
    )
    records = _run(
        target,
        access_token(token, issuer_dir, municipality, Scopes.AUDIT_READ),
        lambda s, m: _query(s, m, request, limit),
    )
    table = Table(title=f"audit log of {municipality}")
    for column in COLUMNS:
        table.add_column(column)
    for record in records:
        table.add_row(*(Text(cell) for cell in record_row(record)))
    out.print(table)
    out.print(f"{len(records)} records", highlight=False)


@audit_app.command()
def verify(
    municipality: Municipality,
    from_sequence: Annotated[
        int, typer.Option("--from", min=0, help="The first sequence to check (0: the start).")
    ] = 0,
    to_sequence: Annotated[
        int, typer.Option("--to", min=0, help="The last sequence to check (0: the head).")
    ] = 0,
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Check a municipality's hash chain and its signed checkpoints; exit code 1 when broken."""
    request = pb.VerifyChainRequest(
        municipality=municipality, from_sequence=from_sequence, to_sequence=to_sequence
    )
    result = _run(
        target,
        access_token(token, issuer_dir, municipality, Scopes.AUDIT_READ),
        lambda s, m: s.VerifyChain(request, metadata=m),
    )
    if result.intact:
        out.print(f"[green]intact[/green]: {result.records_checked} records checked")
    else:
        problem = pb.ChainProblem.Name(result.problem).removeprefix("CHAIN_PROBLEM_")
        out.print(
            f"[red]not intact[/red] at sequence {result.first_bad_sequence}: {problem} — "
            f"{PROBLEMS.get(result.problem, 'unknown problem')} "
            f"({result.records_checked} records checked)"
        )
    if result.HasField("latest_checkpoint"):
        c = result.latest_checkpoint
        out.print(
            f"latest checkpoint: sequence {c.sequence}, head hash {escape(c.head_hash)}, "
            f"key {escape(c.key_id)}, signed {_time(c.sign_time)}",
            highlight=False,
        )
    else:
        out.print("no checkpoint yet")
    if not result.intact:
        raise typer.Exit(1)


async def _export(
    stub: audit_pb2_grpc.AuditServiceAsyncStub, metadata: Any, request: pb.ExportFhirRequest
) -> list[bytes]:
    pages: list[bytes] = []
    request.page_size = PAGE_SIZE
    while True:
        page = await stub.ExportFhir(request, metadata=metadata)
        pages.append(page.fhir_bundle)
        request.page_token = page.next_page_token
        if not request.page_token:
            return pages


@audit_app.command()
def export(
    municipality: Municipality,
    patient: PatientId = "",
    since: Since = "",
    until: Until = "",
    output: Annotated[
        Path | None, typer.Option(help="Write the Bundle to this file (default: stdout).")
    ] = None,
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Export audit records as one FHIR R4 Bundle of AuditEvents (IHE BALP), as JSON."""
    request = pb.ExportFhirRequest(
        municipality=municipality,
        patient=national_id(patient),
        time_range=_period_option(since, until),
    )
    pages = _run(
        target,
        access_token(token, issuer_dir, municipality, Scopes.AUDIT_READ),
        lambda s, m: _export(s, m, request),
    )
    try:
        bundle = merge_bundles(pages)
    except ValueError:
        err.print("[red]the audit service sent a page that is not a valid FHIR Bundle[/red]")
        raise typer.Exit(1) from None
    text = bundle.model_dump_json(indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.write_text(text, encoding="utf-8")
        count = len(bundle.entry or [])
        err.print(f"{count} audit events written to {escape(str(output))}", highlight=False)


@audit_app.command()
def checkpoint(
    municipality: Municipality,
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Sign the head of a municipality's chain now (an operator's command: scope vkp:admin)."""
    request = pb.CreateCheckpointRequest(municipality=municipality)
    created = _run(
        target,
        access_token(token, issuer_dir, municipality, Scopes.ADMIN),
        lambda s, m: s.CreateCheckpoint(request, metadata=m),
    ).checkpoint
    out.print(
        f"checkpoint of {escape(created.municipality)}: sequence {created.sequence}, "
        f"head hash {escape(created.head_hash)}, key {escape(created.key_id)}, "
        f"signed {_time(created.sign_time)}",
        highlight=False,
    )
