"""The control endpoint, for tests and demos; it is never faulted. JSON in and out.

GET    /_control/faults              every municipality's faults that are set
GET    /_control/{k}/faults          one municipality's faults
PUT    /_control/{k}/faults          replace them: {"latency_ms": 200, "error_rate": 0.5, ...}
                                     (fields left out are off); answers the new settings
DELETE /_control/{k}/faults          clear them
POST   /_control/reset               clear every fault and the counters
GET    /_control/counters            {"<k> <type> <parameter names>": n, ...}
DELETE /_control/counters            set every counter to zero
DELETE /_control/notes               delete every received resource (the seed stays)
GET    /_control/listeners           {"main": port, "<k>": port of its own listener, ...}
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

import pydantic
from aiohttp import web

from vkp_epj_sim.faults import Faults, FaultSettings
from vkp_epj_sim.fhir_api import Counters
from vkp_epj_sim.store import Store


class Listeners(Protocol):
    def ports(self) -> dict[str, int]: ...

    def has_own(self, municipality: str) -> bool: ...

    async def follow_faults(self, municipality: str) -> None:
        """Closes or reopens the municipality's own listener as its faults say."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Control:
    def __init__(
        self,
        faults: Faults,
        counters: Counters,
        store: Store,
        municipalities: Collection[str],
        listeners: Listeners,
    ) -> None:
        self._faults = faults
        self._counters = counters
        self._store = store
        self._municipalities = municipalities
        self._listeners = listeners

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/_control/faults", self.all_faults)
        router.add_get(r"/_control/{municipality:\d{4}}/faults", self.get_faults)
        router.add_put(r"/_control/{municipality:\d{4}}/faults", self.put_faults)
        router.add_delete(r"/_control/{municipality:\d{4}}/faults", self.delete_faults)
        router.add_post("/_control/reset", self.reset)
        router.add_get("/_control/counters", self.counters)
        router.add_delete("/_control/counters", self.reset_counters)
        router.add_delete("/_control/notes", self.delete_notes)
        router.add_get("/_control/listeners", self.ports)

    def _municipality(self, request: web.Request) -> str:
        number = request.match_info["municipality"]
        if number not in self._municipalities:
            raise web.HTTPNotFound(reason="no such municipality")
        return number

    async def all_faults(self, request: web.Request) -> web.Response:
        return web.json_response({k: s.model_dump() for k, s in sorted(self._faults.all().items())})

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults.get(self._municipality(request)).model_dump())

    async def put_faults(self, request: web.Request) -> web.Response:
        municipality = self._municipality(request)
        try:
            settings = FaultSettings.model_validate_json(await request.read())
        except pydantic.ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            ]
            return _error(422, "; ".join(problems))
        if settings.refuse_connections and not self._listeners.has_own(municipality):
            return _error(422, "refuse_connections needs the municipality on its own listener")
        self._faults.set(municipality, settings)
        await self._listeners.follow_faults(municipality)
        return web.json_response(settings.model_dump())

    async def delete_faults(self, request: web.Request) -> web.Response:
        municipality = self._municipality(request)
        self._faults.clear(municipality)
        await self._listeners.follow_faults(municipality)
        return web.json_response(self._faults.get(municipality).model_dump())

    async def reset(self, request: web.Request) -> web.Response:
        self._faults.clear_all()
        self._counters.reset()
        for municipality in self._municipalities:
            await self._listeners.follow_faults(municipality)
        return web.json_response({"faults": {}, "counters": {}})

    async def counters(self, request: web.Request) -> web.Response:
        return web.json_response(self._counters.snapshot())

    async def reset_counters(self, request: web.Request) -> web.Response:
        self._counters.reset()
        return web.json_response({})

    async def delete_notes(self, request: web.Request) -> web.Response:
        return web.json_response({"deleted": await self._store.delete_notes()})

    async def ports(self, request: web.Request) -> web.Response:
        return web.json_response(self._listeners.ports())
