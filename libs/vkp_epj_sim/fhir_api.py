"""The FHIR R4 interactions over HTTP: capabilities, read, search and transaction, on each
municipality's base `/<kommunenummer>/fhir`, and read and search across all municipalities on
the plain base `/`.

- `GET [base]/metadata`: the CapabilityStatement.
- `GET [base]/[type]/[id]` (and `/_history/1`): read.
- `GET [base]/[type]?params`, `POST [base]/[type]/_search` (form body, so no value is in the
  URL): a `searchset` Bundle with `total`; `_count` pages, with a `next` link that carries an
  opaque token, never the search's values.
- `POST [base]`: a transaction Bundle of (conditional) creates, answered by a
  `transaction-response` Bundle, 201 Created or 200 OK per entry.

Every request to a municipality is counted (by its search key: the type and the parameter
names) and then meets that municipality's faults. Answers are `application/fhir+json`; errors
are OperationOutcomes.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vkp_epj_sim.capability import capability_statement
from vkp_epj_sim.codes import FHIR_JSON
from vkp_epj_sim.faults import Faults
from vkp_epj_sim.records import checked
from vkp_epj_sim.search import (
    PAGE_PARAMETERS,
    RESULT_PARAMETERS,
    SearchError,
    parameters,
    parse_query,
)
from vkp_epj_sim.store import MultipleMatches, Store, Stored, now_instant
from vkp_epj_sim.transaction import BundleError, read_transaction, resource_model
from vkp_lib.sandbox import SandboxMunicipality

Json = dict[str, Any]
#: On a municipality's own listener: the only municipality served there.
ONLY_MUNICIPALITY = web.AppKey("only_municipality", str)
_TYPE = r"{type:[A-Z][A-Za-z]{1,63}}"
_ID = r"{id:[A-Za-z0-9.\-]{1,64}}"
_PAGES_KEPT = 1000


class Dropped(Exception):
    """The answer is to be dropped: the connection is aborted without one."""


def fhir_response(body: Json, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type=FHIR_JSON,
        charset="utf-8",
    )


def outcome(status: int, code: str, diagnostics: str) -> web.Response:
    """An OperationOutcome with one error issue."""
    body = checked(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }
    )
    return fhir_response(body, status)


class FhirError(Exception):
    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.response = outcome(status, code, diagnostics)


class Counters:
    """How many requests each key had: `<kommunenummer> <type> <parameter names>` for a
    search, `... <type> read`, `... metadata`, `... transaction`; `all` for the plain base."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def count(self, key: str) -> None:
        self._counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        self._counts.clear()


@dataclass(frozen=True)
class _Page:
    municipality: str | None
    resource_type: str
    params: tuple[tuple[str, str], ...]


def search_key(resource_type: str, params: Sequence[tuple[str, str]]) -> str:
    """The type and the names of the parameters that select (never their values); a name the
    type does not have counts as `unsupported`."""
    known = {"_id", *parameters(resource_type)}
    names = {
        name if name in known else "unsupported"
        for name, _ in params
        if name not in RESULT_PARAMETERS and name not in PAGE_PARAMETERS
    }
    return " ".join([resource_type, *sorted(names)])


class FhirApi:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        counters: Counters,
        municipalities: Sequence[SandboxMunicipality],
    ) -> None:
        self._store = store
        self._faults = faults
        self._counters = counters
        self._municipalities = {m.municipality_number: m for m in municipalities}
        self._pages: OrderedDict[str, _Page] = OrderedDict()
        self._started = now_instant()

    def add_routes(self, app: web.Application, *, across: bool) -> None:
        """A municipality's routes; with `across`, the plain base's routes too."""
        base = r"/{municipality:\d{4}}/fhir"
        router = app.router
        router.add_get(base + "/metadata", self.metadata)
        router.add_post(base, self.transaction)
        router.add_post(base + "/", self.transaction)
        router.add_get(f"{base}/{_TYPE}", self.search)
        router.add_post(f"{base}/{_TYPE}/_search", self.search)
        router.add_get(f"{base}/{_TYPE}/{_ID}", self.read)
        router.add_get(f"{base}/{_TYPE}/{_ID}/_history/{{version:\\d+}}", self.read)
        if across:
            router.add_get("/metadata", self.metadata)
            router.add_get(f"/{_TYPE}", self.search)
            router.add_post(f"/{_TYPE}/_search", self.search)
            router.add_get(f"/{_TYPE}/{_ID}", self.read)
            router.add_get(f"/{_TYPE}/{_ID}/_history/{{version:\\d+}}", self.read)

    # -- the steps every interaction takes --

    def _municipality(self, request: web.Request) -> str | None:
        """The kommunenummer of the base, or None for the plain base."""
        number = request.match_info.get("municipality")
        if number is None:
            return None
        only = request.app.get(ONLY_MUNICIPALITY)
        if number not in self._municipalities or (only is not None and number != only):
            raise FhirError(404, "not-found", "no such municipality here")
        return number

    @staticmethod
    def _resource_type(request: web.Request) -> str:
        resource_type = request.match_info["type"]
        if resource_model(resource_type) is None:
            raise FhirError(404, "not-supported", "no such resource type")
        return resource_type

    async def _enter(self, municipality: str | None, key: str, request: web.Request) -> None:
        """Counts the request, then lets the municipality's faults act on it."""
        self._counters.count(f"{municipality or 'all'} {key}")
        if municipality is not None:
            await self._faults.before(municipality, request)

    def _base_url(self, request: web.Request, municipality: str) -> str:
        return f"{request.url.origin()}/{municipality}/fhir"

    def _search_base(self, request: web.Request, municipality: str | None) -> str:
        origin = str(request.url.origin())
        return f"{origin}/{municipality}/fhir" if municipality else origin

    # -- interactions --

    async def metadata(self, request: web.Request) -> web.StreamResponse:
        municipality = self._municipality(request)
        await self._enter(municipality, "metadata", request)
        if municipality is None:
            description = "EPJ-simulator: søk på tvers av alle kommuner"
        else:
            description = f"EPJ-simulator for {self._municipalities[municipality].display_name}"
        base = self._search_base(request, municipality)
        return fhir_response(capability_statement(base, description, self._started))

    async def read(self, request: web.Request) -> web.StreamResponse:
        municipality = self._municipality(request)
        resource_type = self._resource_type(request)
        await self._enter(municipality, f"{resource_type} read", request)
        found = await self._store.read(municipality, resource_type, request.match_info["id"])
        version = request.match_info.get("version")
        if found is None or (version is not None and int(version) != found.version):
            raise FhirError(404, "not-found", f"no such {resource_type}")
        response = fhir_response(found.body)
        response.headers["ETag"] = f'W/"{found.version}"'
        return response

    async def _search_params(self, request: web.Request) -> list[tuple[str, str]]:
        params = list(request.query.items())
        if request.method == "POST":
            if request.content_type != "application/x-www-form-urlencoded":
                raise FhirError(
                    415, "not-supported", "POST _search takes application/x-www-form-urlencoded"
                )
            form = await request.post()
            params += [(k, v) for k, v in form.items() if isinstance(v, str)]
        return params

    def _page_params(
        self, municipality: str | None, resource_type: str, params: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """A page of an earlier search: its parameters, with this page's offset and count."""
        token = dict(params)["_getpages"]
        page = self._pages.get(token)
        if page is None or (page.municipality, page.resource_type) != (
            municipality,
            resource_type,
        ):
            raise FhirError(404, "not-found", "no such page; search again")
        paging = [(k, v) for k, v in params if k in ("_getpagesoffset", "_count")]
        kept = [(k, v) for k, v in page.params if k not in ("_count", "_getpagesoffset")]
        return kept + paging

    def _keep_page(self, page: _Page) -> str:
        token = secrets.token_urlsafe(12)
        self._pages[token] = page
        while len(self._pages) > _PAGES_KEPT:
            self._pages.popitem(last=False)
        return token

    async def search(self, request: web.Request) -> web.StreamResponse:
        municipality = self._municipality(request)
        resource_type = self._resource_type(request)
        params = await self._search_params(request)
        paged = any(name == "_getpages" for name, _ in params)
        key = f"{resource_type} _getpages" if paged else search_key(resource_type, params)
        await self._enter(municipality, key, request)
        if paged:
            params = self._page_params(municipality, resource_type, params)
        try:
            query = parse_query(resource_type, params)
        except SearchError as exc:
            raise FhirError(400, exc.code, str(exc)) from None
        total, found = await self._store.search(municipality, query)
        base = self._search_base(request, municipality)
        bundle: Json = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": now_instant()},
            "type": "searchset",
            "total": total,
            "link": [{"relation": "self", "url": f"{base}/{resource_type}"}],
        }
        following = query.offset + query.count
        if not query.summary_count and found and following < total:
            token = self._keep_page(_Page(municipality, resource_type, tuple(params)))
            bundle["link"].append(
                {
                    "relation": "next",
                    "url": f"{base}/{resource_type}?_getpages={token}"
                    f"&_getpagesoffset={following}&_count={query.count}",
                }
            )
        bundle = checked(bundle)
        if found:
            bundle["entry"] = [self._search_entry(request, s) for s in found]
        return fhir_response(bundle)

    def _search_entry(self, request: web.Request, stored: Stored) -> Json:
        base = self._base_url(request, stored.municipality)
        return {
            "fullUrl": f"{base}/{stored.resource_type}/{stored.id}",
            "resource": stored.body,
            "search": {"mode": "match"},
        }

    async def transaction(self, request: web.Request) -> web.StreamResponse:
        municipality = self._municipality(request)
        assert municipality is not None  # the route has one
        await self._enter(municipality, "transaction", request)
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FhirError(400, "structure", "the body is not JSON") from None
        try:
            creates = read_transaction(body)
        except BundleError as exc:
            code = "structure" if exc.status == 400 else "not-supported"
            raise FhirError(exc.status, code, str(exc)) from None
        try:
            results = await self._store.transact(municipality, creates)
        except MultipleMatches as exc:
            raise FhirError(412, "multiple-matches", str(exc)) from None
        if self._faults.drops_after_store(municipality):
            raise Dropped
        base = self._base_url(request, municipality)
        entries = [
            {
                "fullUrl": f"{base}/{r.resource_type}/{r.id}",
                "response": {
                    "status": "201 Created" if r.created else "200 OK",
                    "location": f"{r.resource_type}/{r.id}/_history/{r.version}",
                    "etag": f'W/"{r.version}"',
                    "lastModified": r.last_updated,
                },
            }
            for r in results
        ]
        # Built here in a fixed shape that the tests check against the R4B Bundle model: not
        # read and written through the model again on every transaction.
        return fhir_response(
            {
                "resourceType": "Bundle",
                "id": str(uuid.uuid4()),
                "type": "transaction-response",
                "entry": entries,
            }
        )


def municipality_names(municipalities: Sequence[SandboxMunicipality]) -> Mapping[str, str]:
    return {m.municipality_number: m.display_name for m in municipalities}
