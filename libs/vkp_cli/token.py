"""`vkp token`: tokens from the development issuer, for local runs, demos and tests.

vkp token issue --kind vendor --client-id dispenser-cloud --org 312229544
vkp token issue --kind vendor --dpop-key dispenser.jwk     a DPoP-bound token (key made if new)
vkp token proof --dpop-key dispenser.jwk --token T --method /vkp.ingest.v1.IngestService/SubmitEvent
vkp token issue --kind service --service ingest
vkp token env                                              the VKP_AUTH_* settings of the issuer

Services trust this issuer only in development mode (VKP_DEVELOPMENT=true).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
from joserfc.jwk import ECKey

from vkp_lib.identity.dpop import DpopKey
from vkp_lib.identity.issuer import DEFAULT_AUDIENCE, DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes

DEFAULT_ISSUER_DIR = Path(".vkp/dev-issuer")
token_app = typer.Typer(help="Tokens from the development issuer.", no_args_is_help=True)

IssuerDir = Annotated[
    Path, typer.Option("--dir", help="The development issuer's folder (made on first use).")
]


class Kind(enum.StrEnum):
    vendor = "vendor"
    admin = "admin"
    service = "service"


DEFAULT_SCOPES = {
    Kind.vendor: [Scopes.INGEST, Scopes.LOOKUP],
    Kind.admin: [Scopes.ADMIN, Scopes.AUDIT_READ],
}


def _dpop_key(path: Path) -> DpopKey:
    if path.exists():
        return DpopKey(ECKey.import_key(json.loads(path.read_text())))
    key = DpopKey.generate()
    path.write_text(json.dumps(key.key.as_dict(private=True)))
    path.chmod(0o600)
    return key


@token_app.command()
def issue(
    kind: Annotated[Kind, typer.Option(help="Who the token is for.")] = Kind.vendor,
    client_id: Annotated[str, typer.Option(help="The client id (vendor or admin).")] = "",
    org: Annotated[str, typer.Option(help="The client's organisation number.")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(help="A scope; repeat for several. Default: by kind."),
    ] = None,
    service: Annotated[str, typer.Option(help="The hub service (kind service).")] = "",
    audience: Annotated[str, typer.Option(help="The audience.")] = DEFAULT_AUDIENCE,
    lifetime: Annotated[int, typer.Option(help="Seconds the token is valid.")] = 3600,
    dpop_key: Annotated[
        Path | None, typer.Option(help="Bind the token to this DPoP key (a JWK file; made if new).")
    ] = None,
    directory: IssuerDir = DEFAULT_ISSUER_DIR,
) -> None:
    """Print a signed access token."""
    issuer = DevelopmentIssuer.open(directory)
    if kind is Kind.service:
        if not service:
            raise typer.BadParameter("a service token needs --service", param_hint="--service")
        typer.echo(issuer.service_token(service))
        return
    jkt = _dpop_key(dpop_key).jkt if dpop_key else ""
    typer.echo(
        issuer.vendor_token(
            client_id or f"{kind.value}-client",
            scope or DEFAULT_SCOPES[kind],
            organization_number=org,
            audience=audience,
            lifetime_seconds=lifetime,
            jkt=jkt,
        )
    )


@token_app.command()
def proof(
    dpop_key: Annotated[Path, typer.Option(help="The DPoP key (a JWK file).")],
    token: Annotated[str, typer.Option(help="The bound access token.")],
    method: Annotated[str, typer.Option(help="The gRPC method, /package.Service/Method.")],
    base_url: Annotated[
        str, typer.Option(help="The hub's public base URL (VKP_AUTH_PUBLIC_BASE_URL).")
    ] = "http://localhost",
) -> None:
    """Print a DPoP proof for one call (send it as the `dpop` metadata)."""
    typer.echo(_dpop_key(dpop_key).proof(base_url, method, token))


@token_app.command()
def env(directory: IssuerDir = DEFAULT_ISSUER_DIR) -> None:
    """Print the settings of services that trust the development issuer."""
    for name, value in DevelopmentIssuer.open(directory).env().items():
        typer.echo(f"{name}={value}")
