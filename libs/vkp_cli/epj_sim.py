"""`vkp epj-sim`: the EPJ simulator, a FHIR R4 server for every sandbox municipality.

vkp epj-sim                                     127.0.0.1:8085, data in .vkp/data/epj-sim.db
vkp epj-sim --port 0 --database /tmp/epj.db     a free port; prints it on the first line
vkp epj-sim --own-listener 5099=8086            Nordheim also on a port of its own
vkp epj-sim --latency 4699=300 --error-rate 3499=0.2 --refuse-connections 5099

Prints the main port on the first line of stdout, then `<kommunenummer> <port>` for each own
listener. Faults can be changed while it runs: PUT /_control/<kommunenummer>/faults.
Also runs as `python -m vkp_cli.epj_sim` and `python -m vkp_epj_sim`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pydantic
import typer
from rich.console import Console

from vkp_epj_sim.faults import FaultSettings
from vkp_epj_sim.seed import DEFAULT_SEED
from vkp_epj_sim.server import DEFAULT_PORT, ConfigError, SimulatorConfig, run
from vkp_lib.logging import configure_logging
from vkp_lib.telemetry import setup_telemetry

err = Console(stderr=True)
DEFAULT_DATA_DIR = Path(".vkp/data")
DATABASE_FILE = "epj-sim.db"


def _pairs(option: str, values: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in values or []:
        number, sep, value = item.partition("=")
        if not sep or not number or not value:
            raise typer.BadParameter(f"{item!r} is not KOMMUNENUMMER=VALUE", param_hint=option)
        found[number] = value
    return found


def _own_listeners(values: list[str] | None) -> dict[str, int]:
    ports: dict[str, int] = {}
    for number, port in _pairs("--own-listener", values).items():
        if not port.isdigit() or int(port) > 65535:
            raise typer.BadParameter(f"{port!r} is not a port", param_hint="--own-listener")
        ports[number] = int(port)
    return ports


Flags = dict[str, tuple[str, Callable[[str], Any], dict[str, str]]]


def _faults(flags: Flags) -> dict[str, dict[str, Any]]:
    """Per kommunenummer, the fault fields the flags set, from
    field -> (option, convert, {kommunenummer: value})."""
    settings: dict[str, dict[str, Any]] = {}
    for name, (option, convert, values) in flags.items():
        for number, value in values.items():
            try:
                settings.setdefault(number, {})[name] = convert(value)
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not valid", param_hint=option) from None
    return settings


def _switches(values: list[str] | None) -> dict[str, str]:
    return dict.fromkeys(values or [], "true")


def epj_sim(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Main port; 0 binds a free one.")] = DEFAULT_PORT,
    data_dir: Annotated[
        Path, typer.Option(help=f"Folder of the SQLite file ({DATABASE_FILE}).")
    ] = DEFAULT_DATA_DIR,
    database: Annotated[
        Path | None, typer.Option(help="The SQLite file itself (instead of --data-dir).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic patients.")] = DEFAULT_SEED,
    own_listener: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KOMMUNENUMMER=PORT",
            help="Serve a municipality on a port of its own too (0: a free one); repeatable.",
        ),
    ] = None,
    latency: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER=MS", help="Added latency per request."),
    ] = None,
    error_rate: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER=FRACTION", help="Fraction of requests that fail."),
    ] = None,
    error_status: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER=500|503", help="Status of injected errors (503)."),
    ] = None,
    error_count: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER=N", help="Fail the next N requests."),
    ] = None,
    timeout: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER", help="Never answer; hold until the client quits."),
    ] = None,
    refuse_connections: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER", help="Close its own listener (needs one)."),
    ] = None,
    drop_after_store: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER", help="Store transactions, then drop the answer."),
    ] = None,
    outage: Annotated[
        list[str] | None,
        typer.Option(metavar="KOMMUNENUMMER", help="Every request fails 503 (or is refused)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="DEBUG, INFO, WARNING or ERROR (default: $VKP_LOG_LEVEL).")
    ] = "",
) -> None:
    """Run the EPJ simulator until SIGTERM or Ctrl-C. Prints the bound ports on stdout."""
    flags: Flags = {
        "latency_ms": ("--latency", int, _pairs("--latency", latency)),
        "error_rate": ("--error-rate", float, _pairs("--error-rate", error_rate)),
        "error_status": ("--error-status", int, _pairs("--error-status", error_status)),
        "error_count": ("--error-count", int, _pairs("--error-count", error_count)),
        "timeout": ("--timeout", bool, _switches(timeout)),
        "refuse_connections": ("--refuse-connections", bool, _switches(refuse_connections)),
        "drop_after_store": ("--drop-after-store", bool, _switches(drop_after_store)),
        "outage": ("--outage", bool, _switches(outage)),
    }
    try:
        faults = {n: FaultSettings(**s) for n, s in _faults(flags).items()}
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise typer.BadParameter(problems, param_hint="fault flags") from None
    config = SimulatorConfig(
        database=database or data_dir / DATABASE_FILE,
        host=host,
        port=port,
        seed=seed,
        own_listeners=_own_listeners(own_listener),
        faults=faults,
    )
    configure_logging("epj-sim", (log_level or os.environ.get("VKP_LOG_LEVEL", "INFO")).upper())
    try:
        telemetry = setup_telemetry("vkp-epj-sim")
    except ValueError as exc:
        err.print(f"[red]invalid telemetry settings:[/red] {exc}")
        raise typer.Exit(2) from None

    def ready(ports: dict[str, int]) -> None:
        lines = [str(ports.pop("main")), *(f"{n} {p}" for n, p in ports.items())]
        print("\n".join(lines), flush=True)

    try:
        asyncio.run(run(config, ready))
    except ConfigError as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]cannot listen:[/red] {exc.strerror or exc}")
        raise typer.Exit(1) from None
    finally:
        telemetry.shutdown()


app = typer.Typer(help="The EPJ simulator.", add_completion=False)
app.command(name="epj-sim")(epj_sim)

if __name__ == "__main__":
    app()
