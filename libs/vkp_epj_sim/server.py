"""The simulator as one process: every sandbox municipality's FHIR base on the main listener,
some municipalities also on a listener of their own (a port that faults can close), the
control endpoint and the page of received notes; seeded at start.

`run(config, on_ready)` serves until SIGTERM or SIGINT; `Simulator.start` / `stop` do the same
for callers that run their own loop.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from vkp_epj_sim.control import Control
from vkp_epj_sim.faults import Faults, FaultSettings
from vkp_epj_sim.fhir_api import ONLY_MUNICIPALITY, Counters, FhirApi
from vkp_epj_sim.listeners import Listener
from vkp_epj_sim.middleware import log, middleware
from vkp_epj_sim.page import patient_id, render
from vkp_epj_sim.records import sandbox_records, today_in_norway
from vkp_epj_sim.seed import DEFAULT_SEED
from vkp_epj_sim.store import Store
from vkp_lib.sandbox import SANDBOX

DEFAULT_PORT = 8085
#: Where the page looks: the newest notes.
PAGE_NOTES = 200


@dataclass(frozen=True)
class SimulatorConfig:
    database: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    seed: int = DEFAULT_SEED
    #: kommunenummer -> port (0: a free one) of a municipality's own listener.
    own_listeners: Mapping[str, int] = field(default_factory=dict)
    #: kommunenummer -> faults from the start.
    faults: Mapping[str, FaultSettings] = field(default_factory=dict)


class ConfigError(ValueError):
    """A simulator configuration the sandbox cannot honour."""


def check_config(config: SimulatorConfig) -> None:
    known = {m.municipality_number for m in SANDBOX.municipalities}
    for number in [*config.own_listeners, *config.faults]:
        if number not in known:
            raise ConfigError(
                f"{number} is not a sandbox municipality ({', '.join(sorted(known))})"
            )
    for number, settings in config.faults.items():
        if settings.refuse_connections and number not in config.own_listeners:
            raise ConfigError(f"refusing connections needs {number} on its own listener")


class Simulator:
    def __init__(self, config: SimulatorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.faults = Faults(config.seed)
        self.counters = Counters()
        self._names = {m.municipality_number: m.display_name for m in SANDBOX.municipalities}
        self.api = FhirApi(store, self.faults, self.counters, SANDBOX.municipalities)
        self.control = Control(self.faults, self.counters, store, list(self._names), self)
        self.main = Listener(self._main_app, config.host, config.port)
        self.own = {
            number: Listener(functools.partial(self._own_app, number), config.host, port)
            for number, port in config.own_listeners.items()
        }

    def _main_app(self) -> web.Application:
        app = web.Application(middlewares=[middleware])
        app.router.add_get("/", self.page)
        self.control.add_routes(app)
        self.api.add_routes(app, across=True)
        return app

    def _own_app(self, municipality: str) -> web.Application:
        app = web.Application(middlewares=[middleware])
        app[ONLY_MUNICIPALITY] = municipality
        self.api.add_routes(app, across=False)
        return app

    async def page(self, request: web.Request) -> web.Response:
        notes = await self.store.notes(PAGE_NOTES)
        patients = await self.store.patients(i for n in notes if (i := patient_id(n.body)))
        return web.Response(
            text=render(notes, patients, self._names), content_type="text/html", charset="utf-8"
        )

    # -- the listeners, as the control endpoint sees them --

    def ports(self) -> dict[str, int]:
        return {"main": self.main.port, **{n: listener.port for n, listener in self.own.items()}}

    def has_own(self, municipality: str) -> bool:
        return municipality in self.own

    async def follow_faults(self, municipality: str) -> None:
        listener = self.own.get(municipality)
        if listener is None:
            return
        if self.faults.get(municipality).closes_listener:
            if listener.is_open:
                await listener.close()
                log.info("listener closed", municipality=municipality, port=listener.port)
        elif not listener.is_open:
            await listener.open()
            log.info("listener reopened", municipality=municipality, port=listener.port)

    # -- life --

    @classmethod
    async def start(cls, config: SimulatorConfig) -> Simulator:
        """Checks the config, opens and seeds the store, applies the faults and opens the
        listeners (an own listener whose faults close it is bound, then closed)."""
        check_config(config)
        store = await Store.open(config.database)
        simulator = cls(config, store)
        try:
            seeded = await store.replace_seed(sandbox_records(config.seed, today_in_norway()))
            for number, settings in config.faults.items():
                simulator.faults.set(number, settings)
            await simulator.main.open()
            for number, listener in simulator.own.items():
                await listener.open()
                await simulator.follow_faults(number)
        except BaseException:
            await simulator.stop()
            raise
        log.info("started", resources=seeded, seed=config.seed, ports=simulator.ports())
        return simulator

    async def stop(self) -> None:
        for listener in self.own.values():
            await listener.close()
        await self.main.close()
        await self.store.close()


async def run(config: SimulatorConfig, on_ready: Callable[[dict[str, int]], None]) -> None:
    """Serves until SIGTERM or SIGINT; `on_ready` gets the bound ports ("main" and the
    kommunenummer of each own listener) once every listener is bound."""
    simulator = await Simulator.start(config)
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        on_ready(simulator.ports())
        await stop.wait()
        log.info("stopping")
    finally:
        await simulator.stop()
