"""The EPJ simulator as a real process over real HTTP: its capabilities, the searches the
lookup makes (also of long value lists), reads, transactions of conditional creates (atomic,
also when two arrive at once), each fault mode as a client meets it, the counters, the page of
notes, the seed, and its log."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from vkp_epj_sim import sandbox_patients, select_patients
from vkp_epj_sim.codes import (
    CAREPLAN_CATEGORY_SYSTEM,
    DNR_SYSTEM,
    FNR_SYSTEM,
    SERVICE_TYPE_SYSTEM,
    VISIT_PLAN_CODE,
)
from vkp_epj_sim.listeners import MAX_REQUEST_LINE
from vkp_epj_sim.search import MAX_COUNT, MAX_PARAMETERS, MAX_VALUES
from vkp_epj_sim.seed import CORE_SERVICE_TYPES, SeedPatient
from vkp_epj_sim.testing import SimulatorProcess
from vkp_lib.national_id import parse_national_id
from vkp_lib.sandbox import BJORKEDAL, FJORDVIK, NORDHEIM, SANDBOX
from vkp_lib.testing.sensitive import SensitiveData

Json = dict[str, Any]
FJORD, BJORK, NORD = (
    FJORDVIK.municipality_number,
    BJORKEDAL.municipality_number,
    NORDHEIM.municipality_number,
)
PATIENTS = sandbox_patients()
MD_PATIENT = select_patients(PATIENTS, municipality=FJORD, active="27")[0]
ENDED_PATIENT = select_patients(PATIENTS, municipality=FJORD, ended_only=True)[0]
D_PATIENT = select_patients(PATIENTS, municipality=BJORK, d_number=True)[0]
NOTE_SYSTEM = "urn:vkp:test:journal-entry"
XHTML = "http://www.w3.org/1999/xhtml"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """One simulator for the module, Nordheim also on a listener of its own."""
    process = SimulatorProcess(tmp_path_factory.mktemp("epj-sim"), own_listeners=[NORD])
    try:
        process.wait_ready()
        yield process
    finally:
        code = process.stop()
    assert code == 0, process.logs()[-3000:]


@pytest.fixture
async def client(sim: SimulatorProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the main listener; every fault and counter cleared before and after."""
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as client:
        (await client.post("/_control/reset")).raise_for_status()
        try:
            yield client
        finally:
            await client.post("/_control/reset")


def fhir(response: httpx.Response, status: int = 200) -> Json:
    assert response.status_code == status, response.text[:1000]
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: Json = response.json()
    return body


def searchset(response: httpx.Response) -> Json:
    body = fhir(response)
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    return body


def problem(response: httpx.Response, status: int) -> Json:
    body = fhir(response, status)
    OperationOutcome.model_validate(body)
    return body


def resources(bundle: Json) -> list[Json]:
    return [entry["resource"] for entry in bundle.get("entry", [])]


def identifier(patient: SeedPatient) -> str:
    return f"{patient.identifier_system}|{patient.national_id}"


async def faults(client: httpx.AsyncClient, municipality: str, **settings: Any) -> None:
    (await client.put(f"/_control/{municipality}/faults", json=settings)).raise_for_status()


# -- notes: transaction bundles like the hub's --------------------------------------------------


def _div(text: str) -> Json:
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{html.escape(text)}</div>'}


def note_bundle(tag: str, patient: SeedPatient, *, conditional: bool = True) -> Json:
    """A note of several resources, each a (conditional) create on an identifier of its own;
    the Observation refers to the Encounter, the Provenance to the Composition, by fullUrl."""
    subject = {"reference": patient.reference}
    now = dt.datetime.now(dt.UTC).isoformat()

    def ident(kind: str) -> Json:
        return {"system": NOTE_SYSTEM, "value": f"{tag}-{kind}"}

    resources_: list[tuple[str, Json]] = [
        (
            "encounter",
            {
                "resourceType": "Encounter",
                "identifier": [ident("encounter")],
                "status": "finished",
                "class": {"code": "VR"},
                "subject": subject,
            },
        ),
        (
            "observation",
            {
                "resourceType": "Observation",
                "identifier": [ident("observation")],
                "status": "final",
                "code": {"text": "Bevegelse i rommet"},
                "subject": subject,
                "encounter": {"reference": f"urn:uuid:{tag}-encounter"},
            },
        ),
        (
            "dispense",
            {
                "resourceType": "MedicationDispense",
                "identifier": [ident("dispense")],
                "status": "completed",
                "medicationCodeableConcept": {"text": "Morgendose"},
                "subject": subject,
            },
        ),
        (
            "issue",
            {
                "resourceType": "DetectedIssue",
                "identifier": [ident("issue")],
                "status": "final",
                "code": {"text": "Dose ikke tatt ut"},
                "patient": subject,
            },
        ),
        (
            "composition",
            {
                "resourceType": "Composition",
                "identifier": ident("composition"),
                "status": "final",
                "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]},
                "subject": subject,
                "date": now,
                "author": [{"display": "Trygg Respons AS"}],
                "title": "Hendelseslogg trygghetsalarm",
                "text": _div("Alarm fra trygghetsalarm"),
                "section": [
                    {"title": "Hendelse", "text": _div("Bruker falt på badet & fikk hjelp <ok>")}
                ],
            },
        ),
        (
            "provenance",
            {
                "resourceType": "Provenance",
                "target": [{"reference": f"urn:uuid:{tag}-composition"}],
                "recorded": now,
                "agent": [{"who": {"display": "VKP"}}],
            },
        ),
    ]
    entries = []
    for kind, resource in resources_:
        request: Json = {"method": "POST", "url": resource["resourceType"]}
        if conditional:
            request["ifNoneExist"] = f"identifier={NOTE_SYSTEM}|{tag}-{kind}"
        entries.append(
            {"fullUrl": f"urn:uuid:{tag}-{kind}", "resource": resource, "request": request}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def statuses(response: httpx.Response) -> list[str]:
    body = fhir(response)
    Bundle.model_validate(body)
    assert body["type"] == "transaction-response"
    return [entry["response"]["status"] for entry in body["entry"]]


def locations(response: httpx.Response) -> list[str]:
    return [entry["response"]["location"] for entry in response.json()["entry"]]


#: The entries of a note that carry an identifier, by the kind in their tag.
KINDS = {
    "encounter": "Encounter",
    "observation": "Observation",
    "dispense": "MedicationDispense",
    "issue": "DetectedIssue",
    "composition": "Composition",
}


async def count_notes(client: httpx.AsyncClient, municipality: str, tag: str, kind: str) -> int:
    """How many resources of the kind the note with this tag left in the municipality."""
    response = await client.post(
        f"/{municipality}/fhir/{KINDS[kind]}/_search",
        data={"identifier": f"{NOTE_SYSTEM}|{tag}-{kind}", "_summary": "count"},
    )
    total: int = searchset(response)["total"]
    return total


# -- the seed (no process) ----------------------------------------------------------------------


def test_every_sandbox_service_type_has_active_patients_in_every_municipality() -> None:
    for place in SANDBOX.municipalities:
        here = place.municipality_number
        assert len(select_patients(PATIENTS, municipality=here)) >= 16
        for code in CORE_SERVICE_TYPES:
            assert len(select_patients(PATIENTS, municipality=here, active=code)) >= 3
        assert select_patients(PATIENTS, municipality=here, active="2.2.1")
        assert len(select_patients(PATIENTS, municipality=here, ended_only=True)) >= 3
    assert len(PATIENTS) >= 50


def test_seeded_national_ids_are_synthetic_unique_and_some_are_d_numbers() -> None:
    ids = [parse_national_id(p.national_id) for p in PATIENTS]
    assert all(i.synthetic for i in ids)
    assert len({p.national_id for p in PATIENTS}) == len(PATIENTS)
    d_numbers = [p for p in PATIENTS if p.is_d_number]
    assert len(d_numbers) >= 3
    assert all(p.identifier_system == DNR_SYSTEM for p in d_numbers)
    assert all(p.identifier_system == FNR_SYSTEM for p in PATIENTS if not p.is_d_number)


def test_the_seed_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    again = sandbox_patients()
    assert [(p.national_id, p.name, p.address) for p in again] == [
        (p.national_id, p.name, p.address) for p in PATIENTS
    ]
    assert {p.national_id for p in sandbox_patients(7)}.isdisjoint(p.national_id for p in PATIENTS)


# -- capabilities, searches, reads --------------------------------------------------------------


async def test_metadata_is_a_fhir_4_0_1_capability_statement_with_the_lookup_searches(
    client: httpx.AsyncClient,
) -> None:
    body = fhir(await client.get(f"/{FJORD}/fhir/metadata"))
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in body["format"]
    rest = body["rest"][0]
    assert {"code": "transaction"} in rest["interaction"]
    params = {r["type"]: {p["name"] for p in r["searchParam"]} for r in rest["resource"]}
    assert {"identifier", "_id"} <= params["Patient"]
    assert {"patient", "status", "type"} <= params["EpisodeOfCare"]
    assert {"subject", "category"} <= params["CarePlan"]
    assert "patient" in params["RelatedPerson"]
    assert "patient" in params["AllergyIntolerance"]
    assert {"subject", "patient"} <= params["Flag"]
    assert "Practitioner" in params


async def test_a_patient_is_found_by_identifier_with_post_search(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"/{D_PATIENT.municipality}/fhir/Patient/_search",
        data={"identifier": identifier(D_PATIENT)},
    )
    bundle = searchset(response)
    assert bundle["total"] == 1
    [patient] = resources(bundle)
    assert patient["id"] == D_PATIENT.id
    assert patient["identifier"] == [{"system": DNR_SYSTEM, "value": D_PATIENT.national_id}]
    assert bundle["entry"][0]["fullUrl"].endswith(f"/{BJORK}/fhir/Patient/{D_PATIENT.id}")


async def test_a_patient_is_found_by_identifier_with_get_search(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        f"/{MD_PATIENT.municipality}/fhir/Patient", params={"identifier": identifier(MD_PATIENT)}
    )
    assert [p["id"] for p in resources(searchset(response))] == [MD_PATIENT.id]


async def test_a_search_in_one_municipality_does_not_find_another_municipalitys_patient(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"/{BJORK}/fhir/Patient/_search", data={"identifier": identifier(MD_PATIENT)}
    )
    assert searchset(response)["total"] == 0


async def test_a_search_on_the_plain_base_spans_every_municipality(
    client: httpx.AsyncClient,
) -> None:
    everyone = searchset(await client.get("/Patient", params={"_summary": "count"}))
    assert everyone["total"] == len(PATIENTS)
    found = searchset(
        await client.post("/Patient/_search", data={"identifier": identifier(D_PATIENT)})
    )
    assert [p["id"] for p in resources(found)] == [D_PATIENT.id]
    assert f"/{BJORK}/fhir/Patient/" in found["entry"][0]["fullUrl"]


async def test_summary_count_answers_the_total_without_entries(
    client: httpx.AsyncClient,
) -> None:
    bundle = searchset(
        await client.post(
            f"/{FJORD}/fhir/EpisodeOfCare/_search", data={"status": "active", "_summary": "count"}
        )
    )
    expected = sum(1 for p in PATIENTS if p.municipality == FJORD for s in p.services if s.active)
    assert bundle["total"] == expected
    assert "entry" not in bundle


async def test_active_episodes_of_a_type_are_found_for_a_patient_with_that_service(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"/{FJORD}/fhir/EpisodeOfCare/_search",
        data={
            "patient": MD_PATIENT.reference,
            "status": "active",
            "type": f"{SERVICE_TYPE_SYSTEM}|27",
        },
    )
    [episode] = resources(searchset(response))
    assert episode["type"][0]["coding"][0]["code"] == "27"
    assert episode["status"] == "active"
    assert episode["managingOrganization"]["display"].startswith(FJORDVIK.display_name)
    assert "start" in episode["period"]


async def test_a_patient_with_ended_services_only_has_no_active_episode(
    client: httpx.AsyncClient,
) -> None:
    url = f"/{FJORD}/fhir/EpisodeOfCare/_search"
    active = searchset(
        await client.post(url, data={"patient": ENDED_PATIENT.reference, "status": "active"})
    )
    assert active["total"] == 0
    every = searchset(await client.post(url, data={"patient": ENDED_PATIENT.reference}))
    assert every["total"] == len(ENDED_PATIENT.services) > 0
    assert all(e["status"] == "finished" and "end" in e["period"] for e in resources(every))


async def test_count_pages_with_next_links_that_carry_no_search_values(
    client: httpx.AsyncClient,
) -> None:
    first = searchset(
        await client.post(
            f"/{FJORD}/fhir/EpisodeOfCare/_search", data={"status": "active", "_count": "5"}
        )
    )
    assert len(first["entry"]) == 5
    seen = [r["id"] for r in resources(first)]
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "status" not in following
    assert "active" not in following
    while following:
        page = searchset(await client.get(following))
        assert page["total"] == first["total"]
        seen += [r["id"] for r in resources(page)]
        following = next((k["url"] for k in page["link"] if k["relation"] == "next"), "")
    assert len(seen) == len(set(seen)) == first["total"]


async def test_the_visit_plan_has_todays_visits(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"/{FJORD}/fhir/CarePlan/_search",
        data={
            "subject": MD_PATIENT.reference,
            "category": f"{CAREPLAN_CATEGORY_SYSTEM}|{VISIT_PLAN_CODE}",
        },
    )
    [plan] = resources(searchset(response))
    activities = [a["detail"] for a in plan["activity"]]
    assert [a["description"] for a in activities] == [v.description for v in MD_PATIENT.visits]
    today = dt.datetime.now(ZoneInfo("Europe/Oslo")).date()
    for activity in activities:
        assert dt.datetime.fromisoformat(activity["scheduledPeriod"]["start"]).date() == today


async def test_next_of_kin_allergies_and_flags_are_found_by_patient(
    client: httpx.AsyncClient,
) -> None:
    patient = next(p for p in PATIENTS if p.allergies and p.warnings)
    base = f"/{patient.municipality}/fhir"
    kin = resources(
        searchset(await client.post(f"{base}/RelatedPerson/_search", data={"patient": patient.id}))
    )
    assert [k["telecom"][0]["value"] for k in kin] == [r.phone for r in patient.next_of_kin]
    assert all(k["relationship"][0]["coding"][0]["code"] == "C" for k in kin)
    allergies = searchset(
        await client.post(f"{base}/AllergyIntolerance/_search", data={"patient": patient.reference})
    )
    assert allergies["total"] == len(patient.allergies)
    for name in ("subject", "patient"):
        flags = searchset(await client.post(f"{base}/Flag/_search", data={name: patient.reference}))
        assert [f["code"]["text"] for f in resources(flags)] == [w.text for w in patient.warnings]


async def test_a_patient_and_its_gp_are_read_by_id(client: httpx.AsyncClient) -> None:
    patient = fhir(await client.get(f"/{FJORD}/fhir/Patient/{MD_PATIENT.id}"))
    address = patient["address"][0]
    extensions = {e["url"].rsplit("/", 1)[1]: e["valueString"] for e in address["extension"]}
    assert extensions["access-hint"] == MD_PATIENT.address.access_hint
    assert extensions["zone"] == MD_PATIENT.address.zone
    household = patient["extension"][0]
    assert household["valueString"] == MD_PATIENT.household
    gp_reference = patient["generalPractitioner"][0]["reference"]
    gp = fhir(await client.get(f"/{FJORD}/fhir/{gp_reference}"))
    assert gp["telecom"][0]["value"] == MD_PATIENT.gp.phone


async def test_a_read_in_another_municipality_or_of_an_unknown_id_is_404(
    client: httpx.AsyncClient,
) -> None:
    problem(await client.get(f"/{BJORK}/fhir/Patient/{MD_PATIENT.id}"), 404)
    problem(await client.get(f"/{FJORD}/fhir/Patient/no-such-patient"), 404)


async def test_an_unknown_municipality_or_resource_type_is_404(client: httpx.AsyncClient) -> None:
    problem(await client.get("/9999/fhir/Patient"), 404)
    problem(await client.get(f"/{FJORD}/fhir/NoSuchType"), 404)
    problem(await client.post("/9999/fhir", json=note_bundle("x", MD_PATIENT)), 404)


async def test_an_unsupported_search_parameter_is_400(client: httpx.AsyncClient) -> None:
    problem(await client.get(f"/{FJORD}/fhir/Patient", params={"name": "x"}), 400)
    problem(await client.get(f"/{FJORD}/fhir/Patient", params={"identifier:of-type": "x"}), 400)


# -- long value lists: a comma ORs up to MAX_VALUES values ---------------------------------------


def identifier_values(asked: list[SeedPatient], count: int) -> str:
    """`count` identifiers OR-ed: those of the patients asked for, then national ids of other
    seeds' patients (synthetic too), which no patient served here has."""
    served = {p.national_id for p in PATIENTS}
    others = (
        p
        for seed in itertools.count(1)
        for p in sandbox_patients(seed)
        if p.national_id not in served
    )
    chosen = itertools.islice(itertools.chain(asked, others), count)
    return ",".join(identifier(p) for p in chosen)


def with_fillers(asked: list[str], count: int, make: str) -> str:
    """`count` values OR-ed: those asked for, then ones made from `make` that match nothing."""
    return ",".join([*asked, *(make.format(n) for n in range(count - len(asked)))])


async def search_by(
    client: httpx.AsyncClient, form: str, url: str, params: dict[str, str]
) -> httpx.Response:
    """The search in the form asked for: `post` ([type]/_search, a form body) or `get`."""
    if form == "post":
        return await client.post(f"{url}/_search", data=params)
    return await client.get(url, params=params)


@pytest.mark.parametrize("form", ["post", "get"])
async def test_an_identifier_search_of_500_values_finds_exactly_the_patients_asked_for(
    client: httpx.AsyncClient, form: str
) -> None:
    asked = PATIENTS[::2]
    values = identifier_values(asked, 500)
    bundle = searchset(await search_by(client, form, "/Patient", {"identifier": values}))
    assert bundle["total"] == len(asked)
    assert sorted(p["id"] for p in resources(bundle)) == sorted(p.id for p in asked)


@pytest.mark.parametrize("form", ["post", "get"])
async def test_an_identifier_search_of_the_maximum_values_is_answered_in_its_municipality(
    client: httpx.AsyncClient, form: str
) -> None:
    values = identifier_values(PATIENTS, MAX_VALUES)
    params = {"identifier": values, "_count": str(MAX_COUNT)}
    bundle = searchset(await search_by(client, form, f"/{FJORD}/fhir/Patient", params))
    expected = sorted(p.id for p in PATIENTS if p.municipality == FJORD)
    assert sorted(p["id"] for p in resources(bundle)) == expected


@pytest.mark.parametrize("form", ["post", "get"])
async def test_one_value_over_the_maximum_is_refused_400_too_costly_naming_the_maximum(
    client: httpx.AsyncClient, form: str
) -> None:
    values = identifier_values(PATIENTS, MAX_VALUES + 1)
    response = await search_by(client, form, f"/{FJORD}/fhir/Patient", {"identifier": values})
    [issue] = problem(response, 400)["issue"]
    assert issue["code"] == "too-costly"
    assert str(MAX_VALUES) in issue["diagnostics"]
    assert PATIENTS[0].national_id not in response.text


@pytest.mark.parametrize(
    ("resource_type", "parameter", "element"),
    [
        ("Patient", "_id", "id"),
        ("EpisodeOfCare", "patient", "patient"),
        ("CarePlan", "subject", "subject"),
        ("Flag", "patient", "subject"),
        ("RelatedPerson", "patient", "patient"),
    ],
)
async def test_id_and_reference_searches_of_the_maximum_values_find_what_was_asked_for(
    client: httpx.AsyncClient, resource_type: str, parameter: str, element: str
) -> None:
    asked = [p for p in PATIENTS if p.municipality == FJORD][::2]
    if parameter == "_id":
        values = with_fillers([p.id for p in asked], MAX_VALUES, f"{FJORD}-x{{}}")
    else:
        values = with_fillers([p.reference for p in asked], MAX_VALUES, f"Patient/{FJORD}-x{{}}")
    url = f"/{FJORD}/fhir/{resource_type}"
    params = {parameter: values, "_count": str(MAX_COUNT)}
    found = resources(searchset(await client.post(f"{url}/_search", data=params)))
    every = resources(searchset(await client.get(url, params={"_count": str(MAX_COUNT)})))
    wanted = {p.id for p in asked} if parameter == "_id" else {p.reference for p in asked}

    def selected(resource: Json) -> bool:
        value = resource[element]
        return (value if parameter == "_id" else value["reference"]) in wanted

    expected = [r["id"] for r in every if selected(r)]
    assert expected
    assert sorted(r["id"] for r in found) == sorted(expected)


async def test_a_search_of_the_maximum_parameters_is_answered_and_one_more_is_400_too_costly(
    client: httpx.AsyncClient,
) -> None:
    url = f"/{FJORD}/fhir/Patient/_search"
    repeated = [identifier(MD_PATIENT)] * MAX_PARAMETERS
    bundle = searchset(await client.post(url, data={"identifier": repeated}))
    assert [p["id"] for p in resources(bundle)] == [MD_PATIENT.id]
    response = await client.post(url, data={"identifier": [*repeated, identifier(MD_PATIENT)]})
    [issue] = problem(response, 400)["issue"]
    assert issue["code"] == "too-costly"
    assert str(MAX_PARAMETERS) in issue["diagnostics"]


async def test_a_count_of_other_than_ascii_digits_is_400_and_a_huge_one_is_the_maximum(
    client: httpx.AsyncClient,
) -> None:
    url = f"/{FJORD}/fhir/Patient"
    problem(await client.get(url, params={"_count": "\N{SUPERSCRIPT TWO}"}), 400)
    problem(await client.get(url, params={"_getpagesoffset": "\N{ARABIC-INDIC DIGIT ONE}"}), 400)
    bundle = searchset(await client.get(url, params={"_count": "9" * 5000}))
    assert (
        len(resources(bundle)) == bundle["total"] == sum(p.municipality == FJORD for p in PATIENTS)
    )


async def test_a_request_line_over_the_limit_is_refused_and_none_of_it_reaches_the_log(
    sim: SimulatorProcess,
) -> None:
    values = identifier_values(PATIENTS, MAX_VALUES * 2).replace("|", "%7C")
    assert len(values) > MAX_REQUEST_LINE
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    try:
        writer.write(f"GET /{FJORD}/fhir/Patient?identifier={values} HTTP/1.1\r\n".encode())
        writer.write(b"Host: 127.0.0.1\r\n\r\n")
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"400"
    logs = sim.logs()  # aiohttp logs the refusal before it answers
    assert "request failed in the server" in logs
    sensitive = SensitiveData()
    for patient in PATIENTS:
        sensitive.add_national_id(patient.national_id)
    assert sensitive.find(logs, "the simulator's log") == []


# -- transactions -------------------------------------------------------------------------------


async def test_a_conditional_bundle_posted_twice_stores_each_resource_once(
    client: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex
    bundle = note_bundle(tag, MD_PATIENT)
    first = await client.post(f"/{FJORD}/fhir", json=bundle)
    assert statuses(first) == ["201 Created"] * 6
    again = await client.post(f"/{FJORD}/fhir", json=bundle)
    assert statuses(again) == ["200 OK"] * 6
    assert locations(again) == locations(first)
    for kind in KINDS:
        assert await count_notes(client, FJORD, tag, kind) == 1


async def test_the_same_bundle_without_if_none_exist_is_stored_twice(
    client: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex
    bundle = note_bundle(tag, MD_PATIENT, conditional=False)
    first = await client.post(f"/{FJORD}/fhir", json=bundle)
    again = await client.post(f"/{FJORD}/fhir", json=bundle)
    assert statuses(first) == statuses(again) == ["201 Created"] * 6
    assert set(locations(first)).isdisjoint(locations(again))
    for kind in KINDS:
        assert await count_notes(client, FJORD, tag, kind) == 2


async def test_concurrent_posts_of_one_conditional_bundle_store_it_once(
    client: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex
    bundle = note_bundle(tag, MD_PATIENT)
    answers = await asyncio.gather(*(client.post(f"/{FJORD}/fhir", json=bundle) for _ in range(8)))
    created = [statuses(a) for a in answers].count(["201 Created"] * 6)
    assert created == 1
    assert all(statuses(a) in (["201 Created"] * 6, ["200 OK"] * 6) for a in answers)
    assert len({tuple(locations(a)) for a in answers}) == 1
    for kind in KINDS:
        assert await count_notes(client, FJORD, tag, kind) == 1


async def test_references_to_an_entrys_full_url_point_at_what_it_created(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(f"/{FJORD}/fhir", json=note_bundle(uuid.uuid4().hex, MD_PATIENT))
    encounter, observation = locations(response)[:2]
    stored = fhir(await client.get(f"/{FJORD}/fhir/{observation}"))
    assert stored["encounter"]["reference"] == encounter.split("/_history")[0]
    assert stored["subject"]["reference"] == MD_PATIENT.reference


async def test_a_malformed_resource_in_a_bundle_is_400_and_nothing_is_stored(
    client: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex
    bundle = note_bundle(tag, MD_PATIENT)
    del bundle["entry"][3]["resource"]["status"]  # DetectedIssue.status is required
    outcome = problem(await client.post(f"/{FJORD}/fhir", json=bundle), 400)
    assert "entry[3]" in outcome["issue"][0]["diagnostics"]
    assert await count_notes(client, FJORD, tag, "encounter") == 0
    problem(await client.post(f"/{FJORD}/fhir", content=b"{not json"), 400)
    problem(await client.post(f"/{FJORD}/fhir", json={"resourceType": "Patient"}), 400)


async def test_if_none_exist_that_matches_two_resources_is_412(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex
    twice = note_bundle(tag, MD_PATIENT, conditional=False)
    for _ in range(2):
        statuses(await client.post(f"/{FJORD}/fhir", json=twice))
    problem(await client.post(f"/{FJORD}/fhir", json=note_bundle(tag, MD_PATIENT)), 412)


# -- faults -------------------------------------------------------------------------------------


async def test_an_error_count_fails_the_next_requests_then_answers_again(
    client: httpx.AsyncClient,
) -> None:
    await faults(client, FJORD, error_count=2, error_status=500)
    codes = [(await client.get(f"/{FJORD}/fhir/metadata")).status_code for _ in range(3)]
    assert codes == [500, 500, 200]


async def test_an_error_rate_of_one_fails_every_request_with_503(
    client: httpx.AsyncClient,
) -> None:
    await faults(client, FJORD, error_rate=1.0)
    for _ in range(3):
        problem(await client.post(f"/{FJORD}/fhir/Patient/_search", data={"_id": "x"}), 503)


async def test_latency_delays_every_answer_by_at_least_the_setting(
    client: httpx.AsyncClient,
) -> None:
    await faults(client, FJORD, latency_ms=300)
    started = time.monotonic()
    fhir(await client.get(f"/{FJORD}/fhir/metadata"))
    assert time.monotonic() - started >= 0.3


async def test_a_timeout_holds_the_request_until_the_client_gives_up_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    await faults(client, FJORD, timeout=True)
    tag = uuid.uuid4().hex
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"/{FJORD}/fhir", json=note_bundle(tag, MD_PATIENT), timeout=0.5)
    await client.delete(f"/_control/{FJORD}/faults")
    assert await count_notes(client, FJORD, tag, "composition") == 0


async def test_refused_connections_on_an_own_listener_then_recovery(
    sim: SimulatorProcess, client: httpx.AsyncClient
) -> None:
    own = sim.own_base_url(NORD)
    fhir(await client.get(f"{own}/metadata"))
    await faults(client, NORD, refuse_connections=True)
    async with httpx.AsyncClient(timeout=5) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get(f"{own}/metadata")
    fhir(await client.get(f"/{NORD}/fhir/metadata"))  # the main listener still serves it
    await client.delete(f"/_control/{NORD}/faults")
    async with httpx.AsyncClient(timeout=5) as fresh:
        fhir(await fresh.get(f"{own}/metadata"))


async def test_an_own_listener_serves_its_municipality_only(
    sim: SimulatorProcess, client: httpx.AsyncClient
) -> None:
    own = sim.own_base_url(NORD)
    problem(await client.get(own.replace(f"/{NORD}/", f"/{FJORD}/") + "/metadata"), 404)


async def test_refusing_connections_without_an_own_listener_is_refused_by_the_control(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(f"/_control/{FJORD}/faults", json={"refuse_connections": True})
    assert response.status_code == 422
    assert (await client.get(f"/_control/{FJORD}/faults")).json()["refuse_connections"] is False


async def test_store_then_drop_stores_the_note_and_a_retry_finds_it(
    client: httpx.AsyncClient,
) -> None:
    await faults(client, FJORD, drop_after_store=True)
    tag = uuid.uuid4().hex
    bundle = note_bundle(tag, MD_PATIENT)
    with pytest.raises(httpx.TransportError):
        await client.post(f"/{FJORD}/fhir", json=bundle)
    await client.delete(f"/_control/{FJORD}/faults")
    assert statuses(await client.post(f"/{FJORD}/fhir", json=bundle)) == ["200 OK"] * 6
    assert await count_notes(client, FJORD, tag, "composition") == 1


async def test_an_outage_fails_every_request_to_the_municipality_with_503(
    client: httpx.AsyncClient,
) -> None:
    await faults(client, FJORD, outage=True)
    problem(await client.get(f"/{FJORD}/fhir/metadata"), 503)
    problem(await client.get(f"/{FJORD}/fhir/Patient/{MD_PATIENT.id}"), 503)
    problem(await client.post(f"/{FJORD}/fhir", json=note_bundle("x", MD_PATIENT)), 503)
    fhir(await client.get(f"/{BJORK}/fhir/metadata"))  # the others answer
    assert (await client.get("/_control/faults")).json()[FJORD]["outage"] is True


async def test_an_outage_of_a_municipality_on_its_own_listener_refuses_connections(
    sim: SimulatorProcess, client: httpx.AsyncClient
) -> None:
    await faults(client, NORD, outage=True)
    async with httpx.AsyncClient(timeout=5) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get(f"{sim.own_base_url(NORD)}/metadata")
    problem(await client.get(f"/{NORD}/fhir/metadata"), 503)


async def test_faults_given_as_flags_act_from_the_first_request(tmp_path: Path) -> None:
    process = SimulatorProcess(
        tmp_path,
        "--error-count",
        f"{FJORD}=1",
        "--error-status",
        f"{FJORD}=500",
        "--outage",
        BJORK,
        "--refuse-connections",
        NORD,
        own_listeners=[NORD],
    )
    try:
        process.wait_ready()
        async with httpx.AsyncClient(base_url=process.url, timeout=5) as client:
            problem(await client.get(f"/{FJORD}/fhir/metadata"), 500)
            fhir(await client.get(f"/{FJORD}/fhir/metadata"))
            problem(await client.get(f"/{BJORK}/fhir/metadata"), 503)
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{process.own_base_url(NORD)}/metadata")
    finally:
        assert process.stop() == 0


# -- counters, page, seed, log ------------------------------------------------------------------


async def test_counters_count_requests_by_type_and_parameter_names(
    client: httpx.AsyncClient,
) -> None:
    for patient in (MD_PATIENT, ENDED_PATIENT):
        await client.post(
            f"/{FJORD}/fhir/Patient/_search", data={"identifier": identifier(patient)}
        )
    await client.post(
        f"/{FJORD}/fhir/EpisodeOfCare/_search",
        data={"status": "active", "patient": MD_PATIENT.reference, "_count": "10"},
    )
    await client.get(f"/{BJORK}/fhir/Patient/{D_PATIENT.id}")
    counted = await client.get("/_control/counters")
    assert counted.json() == {
        f"{FJORD} Patient identifier": 2,
        f"{FJORD} EpisodeOfCare patient status": 1,
        f"{BJORK} Patient read": 1,
    }
    assert MD_PATIENT.national_id not in counted.text
    await client.delete("/_control/counters")
    assert (await client.get("/_control/counters")).json() == {}


async def test_the_page_lists_a_received_note_with_its_text(client: httpx.AsyncClient) -> None:
    statuses(await client.post(f"/{FJORD}/fhir", json=note_bundle(uuid.uuid4().hex, MD_PATIENT)))
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    composition = page.text.split("Composition · 34133-9", 1)[1].split("</tr>", 1)[0]
    assert html.escape("Hendelse: Bruker falt på badet & fikk hjelp <ok>") in composition
    assert f"{MD_PATIENT.given} {MD_PATIENT.family}" in page.text.split("Composition", 1)[0][-400:]
    assert FJORDVIK.display_name in page.text
    assert "<ok>" not in page.text
    assert MD_PATIENT.national_id not in page.text


async def test_the_page_masks_a_patient_named_by_national_id(client: httpx.AsyncClient) -> None:
    bundle = note_bundle(uuid.uuid4().hex, D_PATIENT)
    issue = bundle["entry"][3]["resource"]
    issue["patient"] = {"identifier": {"system": DNR_SYSTEM, "value": D_PATIENT.national_id}}
    statuses(await client.post(f"/{BJORK}/fhir", json=bundle))
    page = (await client.get("/")).text
    assert f"{D_PATIENT.national_id[:6]}*****" in page
    assert D_PATIENT.national_id not in page


async def test_two_starts_with_the_same_seed_serve_the_same_patients(tmp_path: Path) -> None:
    served = []
    for run in ("a", "b"):
        process = SimulatorProcess(tmp_path / run, seed=7)
        try:
            process.wait_ready()
            async with httpx.AsyncClient(base_url=process.url, timeout=10) as client:
                bundle = searchset(await client.get("/Patient", params={"_count": "1000"}))
        finally:
            assert process.stop() == 0
        served.append([{k: v for k, v in p.items() if k != "meta"} for p in resources(bundle)])
    assert served[0] == served[1]
    assert [p["identifier"][0]["value"] for p in served[0]] == [
        p.national_id for p in sandbox_patients(7)
    ]


async def test_no_national_id_reaches_the_log_after_identifier_searches(
    sim: SimulatorProcess, client: httpx.AsyncClient
) -> None:
    for patient in PATIENTS:
        base = f"/{patient.municipality}/fhir"
        response = await client.post(
            f"{base}/Patient/_search", data={"identifier": identifier(patient)}
        )
        assert searchset(response)["total"] == 1
    await client.get(f"/{FJORD}/fhir/Patient", params={"identifier": identifier(MD_PATIENT)})
    await client.get(f"/{FJORD}/fhir/Patient/{MD_PATIENT.national_id}")  # a careless client
    logs = sim.logs()
    assert logs.count("/Patient/_search") >= len(PATIENTS)
    sensitive = SensitiveData()
    for patient in PATIENTS:
        sensitive.add_national_id(patient.national_id)
        sensitive.folded[patient.name.lower()] = "patient name"
    assert sensitive.find(logs, "the simulator's log") == []
