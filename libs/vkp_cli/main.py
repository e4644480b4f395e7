"""`vkp`: run the hub's services.

vkp serve ingest --port 0     one service; prints the bound port on one line of stdout
vkp run                       all five services as separate processes and the EPJ simulator
                              (development mode, with the development token issuer unless
                              VKP_AUTH_ISSUER is set; the sandbox seeded in the registry)
vkp token issue ...           tokens from the development issuer
vkp event submit|status       send an event to ingest as a vendor would, and follow it
vkp registry ...              administer the registry
vkp audit ...                 read, verify, export and checkpoint the audit log
vkp epj-sim                   the EPJ simulator (FHIR R4) of the sandbox municipalities
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import os
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import grpc
import typer
from pydantic_settings import BaseSettings
from rich.console import Console
from rich.table import Table

from vkp.registry.v1 import registry_pb2_grpc
from vkp_cli.audit import audit_app
from vkp_cli.epj_sim import epj_sim
from vkp_cli.event import event_app
from vkp_cli.registry import registry_app, seed
from vkp_cli.token import DEFAULT_ISSUER_DIR, token_app
from vkp_lib.clients import insecure_channel
from vkp_lib.errors import StartupError
from vkp_lib.identity.issuer import DevelopmentIssuer
from vkp_lib.identity.permissions import Scopes
from vkp_lib.identity.setup import DevelopmentKeysRefused
from vkp_lib.logging import configure_logging
from vkp_lib.runner import Service, serve
from vkp_lib.sandbox import SANDBOX
from vkp_lib.settings import AuthSettings, RuntimeSettings, SettingsError, load_settings
from vkp_lib.telemetry import setup_telemetry

app = typer.Typer(help="VKP, the open welfare-technology hub.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(registry_app, name="registry")
app.add_typer(audit_app, name="audit")
app.add_typer(event_app, name="event")
app.command(name="epj-sim")(epj_sim)
err = Console(stderr=True, soft_wrap=True)


class ServiceName(enum.StrEnum):
    registry = "registry"
    ingest = "ingest"
    journaling = "journaling"
    lookup = "lookup"
    audit = "audit"


DEFAULT_PORTS = {name: 50051 + i for i, name in enumerate(ServiceName)}
#: The EPJ simulator's port: the sandbox's EPJ endpoints point at it.
EPJ_SIMULATOR_PORT = 8085


def _app(name: ServiceName) -> ModuleType:
    """The service's `app` module: `SETTINGS` (its settings classes) and `build_service`."""
    return importlib.import_module(f"vkp_{name.value}.app")


def _settings(*extra: type[BaseSettings]) -> tuple[RuntimeSettings, AuthSettings, list[Any]]:
    """The runtime's, authentication's and `extra` settings; exit 2 with a line per problem."""
    try:
        runtime, auth, *own = load_settings(RuntimeSettings, AuthSettings, *extra)
    except SettingsError as exc:
        err.print("[red]invalid settings[/red]", *(f"  {p}" for p in exc.problems), sep="\n")
        raise typer.Exit(2) from None
    assert isinstance(runtime, RuntimeSettings)
    assert isinstance(auth, AuthSettings)
    return runtime, auth, own


def _service(
    name: ServiceName,
    module: ModuleType,
    settings: RuntimeSettings,
    auth: AuthSettings,
    own: list[Any],
) -> Service[Any]:
    try:
        service: Service[Any] = module.build_service(settings, auth, *own)
    except DevelopmentKeysRefused as exc:
        err.print(f"[red]refusing to start:[/red] {exc}")
        raise typer.Exit(2) from None
    except StartupError as exc:
        err.print(f"[red]{name.value} could not start:[/red] {exc}")
        raise typer.Exit(1) from None
    return service


@app.command(name="serve")
def serve_command(
    name: Annotated[ServiceName, typer.Argument(help="The service to run.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on; 0 binds a free one. Default: 50051-50055."),
    ] = None,
) -> None:
    """Run one service until SIGTERM or SIGINT. Prints the bound port on one line of stdout."""
    module = _app(name)
    settings, auth, own = _settings(*module.SETTINGS)
    configure_logging(name.value, settings.log_level)
    try:
        telemetry = setup_telemetry(f"vkp-{name.value}")
    except ValueError as exc:
        err.print(f"[red]invalid telemetry settings:[/red] {exc}")
        raise typer.Exit(2) from None
    service = _service(name, module, settings, auth, own)
    chosen = DEFAULT_PORTS[name] if port is None else port
    try:
        asyncio.run(
            serve(service, settings, host, chosen, tracer_provider=telemetry.tracer_provider)
        )
    except StartupError as exc:
        err.print(f"[red]{name.value} could not start:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        telemetry.shutdown()


async def _seed_sandbox(address: str, issuer: DevelopmentIssuer, simulator_url: str) -> None:
    token = issuer.vendor_token("vkp-run", [Scopes.ADMIN])
    async with insecure_channel(address, "vkp.registry.v1.RegistryService") as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await seed(
            stub, (("authorization", f"Bearer {token}"),), SANDBOX, simulator_url=simulator_url
        )


async def _run_all(
    host: str,
    ports: dict[ServiceName, int],
    epj_port: int,
    env: dict[str, str],
    issuer: DevelopmentIssuer | None,
) -> int:
    processes: dict[ServiceName, asyncio.subprocess.Process] = {}
    for name in ServiceName:
        processes[name] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vkp_cli",
            "serve",
            name.value,
            "--host",
            host,
            "--port",
            str(ports[name]),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
    simulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vkp_epj_sim",
        "--host",
        host,
        "--port",
        str(epj_port),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    table = Table(title="VKP hub")
    table.add_column("service")
    table.add_column("address")
    for name, process in processes.items():
        assert process.stdout is not None
        line = await process.stdout.readline()
        address = f"{host}:{line.decode().strip()}" if line else "[red]failed to start[/red]"
        table.add_row(name.value, address)
    assert simulator.stdout is not None
    line = await simulator.stdout.readline()
    table.add_row(
        "EPJ simulator",
        f"http://{host}:{line.decode().strip()}/" if line else "[red]failed to start[/red]",
    )
    err.print(table)
    if issuer is not None:
        local = _local(host)
        try:
            await _seed_sandbox(
                f"{local}:{ports[ServiceName.registry]}", issuer, f"http://{local}:{epj_port}"
            )
            err.print("sandbox seeded in the registry (vkp registry list municipalities)")
        except grpc.aio.AioRpcError as exc:
            err.print(f"[red]the sandbox could not be seeded:[/red] {exc.code().name}")
    err.print("Ctrl-C stops the hub.")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exits = {asyncio.create_task(p.wait()): n for n, p in processes.items()}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *exits], return_when=asyncio.FIRST_COMPLETED)
    failed = [exits[t] for t in done if t in exits]
    for name in failed:
        err.print(f"[red]{name.value} exited with {processes[name].returncode}[/red]")
    for process in [*processes.values(), simulator]:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(p.wait() for p in [*processes.values(), simulator]))
    return 1 if failed or any(codes) else 0


def _local(host: str) -> str:
    """Where a process on this machine reaches a server listening on `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Address the services listen on.")] = "127.0.0.1",
    first_port: Annotated[
        int,
        typer.Option(
            min=1, max=65530, help="Port of the registry; the other four take the next ones."
        ),
    ] = DEFAULT_PORTS[ServiceName.registry],
    epj_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the EPJ simulator.")
    ] = EPJ_SIMULATOR_PORT,
    issuer_dir: Annotated[
        Path, typer.Option(help="The development issuer's folder (made on first use).")
    ] = DEFAULT_ISSUER_DIR,
) -> None:
    """Run the whole hub: the five services as separate processes, until Ctrl-C or SIGTERM.

    Unless VKP_AUTH_ISSUER is set, the hub runs in development mode and trusts the development
    token issuer (`vkp token issue` signs tokens it accepts)."""
    ports = {name: first_port + i for i, name in enumerate(ServiceName)}
    local = _local(host)
    env = dict(os.environ)
    env |= {
        f"VKP_{name.value.upper()}_TARGET": f"{local}:{ports[name]}"
        for name in (
            ServiceName.registry,
            ServiceName.ingest,
            ServiceName.journaling,
            ServiceName.audit,
        )
    }
    issuer = None
    if "VKP_AUTH_ISSUER" not in env:
        issuer = DevelopmentIssuer.open(issuer_dir)
        env |= issuer.env()
        err.print(f"development mode: tokens from `vkp token issue` (keys in {issuer_dir})")
    os.environ.update(env)
    # Every service's settings, before any of them starts.
    _settings(*(cls for name in ServiceName for cls in _app(name).SETTINGS))
    raise typer.Exit(asyncio.run(_run_all(host, ports, epj_port, env, issuer)))
