"""`vkp registry`: an administrator's commands against the registry service.

vkp registry seed --sandbox                     the sandbox's municipalities, vendors, agreements
vkp registry list municipalities|vendors|systems|agreements
vkp registry add municipality --org 964120005 --number 4699 --name "Fjordvik kommune"
vkp registry add agreement --municipality 964120005 --system vendors/912340007/systems/x ...
vkp registry revoke municipalities/964120005/agreements/912340007-dispenser-cloud
vkp registry explain --client-id dosetta-dispenser --municipality 964120005 --service MD

Calls carry an administrator's token: --token, or VKP_TOKEN, or one the development issuer signs
(--issuer-dir, made on first use). `explain` asks CheckAccess, which only the hub's services
may call: it signs a service token with the development issuer's service key, or with
VKP_AUTH_SERVICE_KEY_FILE.
"""

from __future__ import annotations

import enum
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import grpc
import typer
from rich.console import Console
from rich.table import Table

from vkp.common.v1 import common_pb2
from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_cli.calls import call
from vkp_cli.token import DEFAULT_ISSUER_DIR
from vkp_lib import denials
from vkp_lib.identity.issuer import DevelopmentIssuer, ServiceTokenSource, load_private_key
from vkp_lib.identity.permissions import Scopes
from vkp_lib.sandbox import EPJ_SIMULATOR_URL, SANDBOX, Sandbox

registry_app = typer.Typer(help="Administer the registry.", no_args_is_help=True)
out = Console(soft_wrap=True)
SERVICE = "vkp.registry.v1.RegistryService"
#: A namespace for the request ids of seeding, so seeding twice creates nothing twice.
SEED_NAMESPACE = uuid.UUID("5d7f9f52-3c0e-4d64-9d53-0c8f0e7a1a11")
T = TypeVar("T")

Target = Annotated[str, typer.Option(help="The registry, host:port.")]
Token = Annotated[str, typer.Option(help="An administrator's token (default: $VKP_TOKEN).")]
IssuerDir = Annotated[
    Path, typer.Option(help="The development issuer's folder, for a token when none is given.")
]
DEFAULT_TARGET = "127.0.0.1:50051"

SERVICE_CODES = {
    code: getattr(common_pb2, f"SERVICE_CODE_{code}") for code in SANDBOX.service_types
}
ACTIONS = {"journal": pb.ACCESS_ACTION_JOURNAL, "lookup": pb.ACCESS_ACTION_LOOKUP}


def _admin_token(token: str, issuer_dir: Path) -> str:
    token = token or os.environ.get("VKP_TOKEN", "")
    if token:
        return token
    return DevelopmentIssuer.open(issuer_dir).vendor_token(
        "vkp-cli", [Scopes.ADMIN, Scopes.AUDIT_READ]
    )


def _run(
    target: str,
    token: str,
    work: Callable[[registry_pb2_grpc.RegistryServiceAsyncStub, Any], Awaitable[T]],
) -> T:
    return call(target, SERVICE, registry_pb2_grpc.RegistryServiceStub, token, work)


def _request_id(*parts: str) -> str:
    return str(uuid.uuid5(SEED_NAMESPACE, "/".join(parts)))


async def seed(
    stub: registry_pb2_grpc.RegistryServiceAsyncStub,
    metadata: Any,
    sandbox: Sandbox,
    *,
    simulator_url: str,
) -> None:
    """Creates the sandbox in the registry, its EPJ endpoints on the simulator at
    `simulator_url`; what exists already is left as it is (the request ids are derived from the
    names, so a repeat is answered as the first time)."""

    async def create(call: Awaitable[Any]) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.ALREADY_EXISTS:
                raise

    for system in sandbox.vendor_systems:
        vendor = pb.Vendor(
            organization_number=system.vendor_organization_number, display_name=system.vendor_name
        )
        await create(
            stub.CreateVendor(
                pb.CreateVendorRequest(
                    vendor=vendor, request_id=_request_id("vendor", vendor.organization_number)
                ),
                metadata=metadata,
            )
        )
        await create(
            stub.CreateVendorSystem(
                pb.CreateVendorSystemRequest(
                    parent=f"vendors/{system.vendor_organization_number}",
                    system_id=system.system_id,
                    vendor_system=pb.VendorSystem(
                        display_name=system.display_name, client_ids=list(system.client_ids)
                    ),
                    request_id=_request_id("system", system.name),
                ),
                metadata=metadata,
            )
        )
    for place in sandbox.municipalities:
        parent = f"municipalities/{place.organization_number}"
        await create(
            stub.CreateMunicipality(
                pb.CreateMunicipalityRequest(
                    municipality=pb.Municipality(
                        organization_number=place.organization_number,
                        municipality_number=place.municipality_number,
                        display_name=place.display_name,
                    ),
                    request_id=_request_id("municipality", parent),
                ),
                metadata=metadata,
            )
        )
        mode = pb.DELIVERY_MODE_PULL if place.delivery_mode == "pull" else pb.DELIVERY_MODE_PUSH
        # The simulator takes no credentials, so the endpoint names no secret.
        await create(
            stub.CreateEpjEndpoint(
                pb.CreateEpjEndpointRequest(
                    parent=parent,
                    epj_endpoint=pb.EpjEndpoint(
                        adapter=pb.EPJ_ADAPTER_FHIR,
                        base_url=place.epj_base_url(simulator_url),
                        delivery_mode=mode,
                    ),
                    request_id=_request_id("endpoint", parent),
                ),
                metadata=metadata,
            )
        )
        await stub.UpdatePartnerProfile(
            pb.UpdatePartnerProfileRequest(
                partner_profile=pb.PartnerProfile(
                    name=f"{parent}/partnerProfile",
                    mappings=[
                        pb.ServiceTypeMapping(
                            service_code=SERVICE_CODES[code], service_type_patterns=list(patterns)
                        )
                        for code, patterns in sandbox.service_types.items()
                    ],
                )
            ),
            metadata=metadata,
        )
    for place, system in sandbox.agreements():
        parent = f"municipalities/{place.organization_number}"
        await create(
            stub.CreateAgreement(
                pb.CreateAgreementRequest(
                    parent=parent,
                    agreement_id=f"{system.vendor_organization_number}-{system.system_id}",
                    agreement=pb.Agreement(
                        vendor_system=system.name,
                        service_codes=[SERVICE_CODES[c] for c in system.service_codes],
                        actions=[ACTIONS[a] for a in system.actions],
                    ),
                    request_id=_request_id("agreement", parent, system.name),
                ),
                metadata=metadata,
            )
        )


@registry_app.command(name="seed")
def seed_command(
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Seed the sandbox.")] = False,
    epj_url: Annotated[
        str, typer.Option(help="The EPJ simulator the sandbox's EPJ endpoints point at.")
    ] = EPJ_SIMULATOR_URL,
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Fill the registry with the sandbox (idempotent)."""
    if not sandbox:
        raise typer.BadParameter("only --sandbox can be seeded", param_hint="--sandbox")
    _run(
        target,
        _admin_token(token, issuer_dir),
        lambda s, m: seed(s, m, SANDBOX, simulator_url=epj_url),
    )
    out.print(
        f"sandbox seeded: {len(SANDBOX.municipalities)} municipalities, "
        f"{len(SANDBOX.vendor_systems)} vendor systems, {len(SANDBOX.agreements())} agreements"
    )


class Listable(enum.StrEnum):
    municipalities = "municipalities"
    vendors = "vendors"
    systems = "systems"
    agreements = "agreements"


async def _all(
    stub: registry_pb2_grpc.RegistryServiceAsyncStub, metadata: Any, what: Listable
) -> list[Any]:
    items: list[Any] = []
    token = ""
    while True:
        if what is Listable.municipalities:
            page: Any = await stub.ListMunicipalities(
                pb.ListMunicipalitiesRequest(page_token=token), metadata=metadata
            )
            items += page.municipalities
        elif what is Listable.vendors:
            page = await stub.ListVendors(
                pb.ListVendorsRequest(page_token=token), metadata=metadata
            )
            items += page.vendors
        elif what is Listable.systems:
            page = await stub.ListVendorSystems(
                pb.ListVendorSystemsRequest(parent="vendors/-", page_token=token), metadata=metadata
            )
            items += page.vendor_systems
        else:
            page = await stub.ListAgreements(
                pb.ListAgreementsRequest(parent="municipalities/-", page_token=token),
                metadata=metadata,
            )
            items += page.agreements
        token = page.next_page_token
        if not token:
            return items


@registry_app.command(name="list")
def list_command(
    what: Annotated[Listable, typer.Argument(help="What to list.")],
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """List municipalities, vendors, vendor systems or agreements."""
    items = _run(target, _admin_token(token, issuer_dir), lambda s, m: _all(s, m, what))
    table = Table(title=what.value)
    if what is Listable.municipalities:
        for column in ("name", "kommunenummer", "display name", "state"):
            table.add_column(column)
        for m in items:
            state = pb.MunicipalityState.Name(m.state).removeprefix("MUNICIPALITY_STATE_")
            table.add_row(m.name, m.municipality_number, m.display_name, state)
    elif what is Listable.vendors:
        for column in ("name", "display name"):
            table.add_column(column)
        for v in items:
            table.add_row(v.name, v.display_name)
    elif what is Listable.systems:
        for column in ("name", "display name", "client ids"):
            table.add_column(column)
        for s in items:
            table.add_row(s.name, s.display_name, ", ".join(s.client_ids))
    else:
        for column in ("name", "vendor system", "services", "actions", "state"):
            table.add_column(column)
        for a in items:
            table.add_row(
                a.name,
                a.vendor_system,
                " ".join(
                    common_pb2.ServiceCode.Name(c).removeprefix("SERVICE_CODE_")
                    for c in a.service_codes
                ),
                " ".join(
                    pb.AccessAction.Name(x).removeprefix("ACCESS_ACTION_").lower()
                    for x in a.actions
                ),
                pb.AgreementState.Name(a.state).removeprefix("AGREEMENT_STATE_"),
            )
    out.print(table)


add_app = typer.Typer(help="Add a resource.", no_args_is_help=True)
registry_app.add_typer(add_app, name="add")


@add_app.command(name="municipality")
def add_municipality(
    org: Annotated[str, typer.Option(help="Organisation number.")],
    number: Annotated[str, typer.Option(help="Kommunenummer.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Add a municipality."""
    request = pb.CreateMunicipalityRequest(
        municipality=pb.Municipality(
            organization_number=org, municipality_number=number, display_name=name
        ),
        request_id=str(uuid.uuid4()),
    )
    created = _run(
        target,
        _admin_token(token, issuer_dir),
        lambda s, m: s.CreateMunicipality(request, metadata=m),
    )
    out.print(f"added {created.municipality.name}")


@add_app.command(name="agreement")
def add_agreement(
    municipality: Annotated[str, typer.Option(help="The municipality's organisation number.")],
    system: Annotated[str, typer.Option(help="vendors/{org}/systems/{id}.")],
    service: Annotated[list[str], typer.Option(help="A service code; repeat for several.")],
    action: Annotated[list[str], typer.Option(help="journal or lookup; repeat for both.")],
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Add an agreement between a municipality and a vendor system."""
    request = pb.CreateAgreementRequest(
        parent=f"municipalities/{municipality}",
        agreement=pb.Agreement(
            vendor_system=system,
            service_codes=[SERVICE_CODES[s.upper()] for s in service],
            actions=[ACTIONS[a.lower()] for a in action],
        ),
        request_id=str(uuid.uuid4()),
    )
    created = _run(
        target, _admin_token(token, issuer_dir), lambda s, m: s.CreateAgreement(request, metadata=m)
    )
    out.print(f"added {created.agreement.name}")


@registry_app.command()
def revoke(
    agreement: Annotated[str, typer.Argument(help="municipalities/{org}/agreements/{id}.")],
    target: Target = DEFAULT_TARGET,
    token: Token = "",
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Revoke an agreement: every access it granted is denied from the next decision on."""
    request = pb.UpdateAgreementRequest(
        agreement=pb.Agreement(name=agreement, state=pb.AGREEMENT_STATE_REVOKED),
    )
    request.update_mask.paths.append("state")
    updated = _run(
        target, _admin_token(token, issuer_dir), lambda s, m: s.UpdateAgreement(request, metadata=m)
    )
    out.print(f"revoked {updated.agreement.name} (revision {updated.agreement.revision})")


@registry_app.command()
def explain(
    client_id: Annotated[str, typer.Option(help="The vendor system's client id.")],
    municipality: Annotated[str, typer.Option(help="The municipality's organisation number.")],
    service: Annotated[str, typer.Option(help="The service code: RT TA GPS MD DT DHO.")],
    action: Annotated[str, typer.Option(help="journal or lookup.")] = "journal",
    target: Target = DEFAULT_TARGET,
    issuer_dir: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Show the access decision the hub would make, with why."""
    key_file = os.environ.get("VKP_AUTH_SERVICE_KEY_FILE")
    key_path = Path(key_file) if key_file else DevelopmentIssuer.open(issuer_dir).service_key_file
    service_token = ServiceTokenSource(load_private_key(key_path), "cli").token()
    request = pb.CheckAccessRequest(
        client_id=client_id,
        municipality=municipality,
        service_code=SERVICE_CODES[service.upper()],
        action=ACTIONS[action.lower()],
    )
    decision = _run(target, service_token, lambda s, m: s.CheckAccess(request, metadata=m)).decision
    if decision.allowed:
        patterns = ", ".join(decision.service_type_patterns) or "none mapped"
        out.print(f"[green]allowed[/green] by {decision.agreement}")
        out.print(f"  EPJ service types that count as {service.upper()}: {patterns}")
    else:
        why = denials.explain(decision, request.service_code, request.action)
        out.print(f"[red]denied: {denials.reason(decision)}[/red] — {why}")
        if decision.agreement:
            out.print(f"  agreement: {decision.agreement}")
    if decision.vendor_system:
        out.print(f"  vendor system: {decision.vendor_system}")
    out.print(f"  registry revision: {decision.revision}")
