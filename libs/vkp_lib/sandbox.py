"""The sandbox: the fictional municipalities, vendors and agreements of local runs, demos and
tests, defined once. The registry seeds itself from it (`vkp registry seed --sandbox`), the EPJ
simulator serves one FHIR base per municipality from it, and the demo drives it.

Every organisation number passes mod-11 and belongs to no real organisation we know of; the
municipalities and vendors are invented. The kommunenummer use real county prefixes (46
Vestland, 34 Innlandet, 50 Trøndelag) with numbers no municipality has.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Where the EPJ simulator listens by default; each municipality is under /<kommunenummer>/fhir.
EPJ_SIMULATOR_URL = "http://127.0.0.1:8085"


@dataclass(frozen=True)
class SandboxMunicipality:
    organization_number: str
    municipality_number: str
    display_name: str
    delivery_mode: str  # "push" or "pull"

    def epj_base_url(self, simulator_url: str = EPJ_SIMULATOR_URL) -> str:
        return f"{simulator_url.rstrip('/')}/{self.municipality_number}/fhir"


@dataclass(frozen=True)
class SandboxVendorSystem:
    vendor_organization_number: str
    vendor_name: str
    system_id: str
    display_name: str
    client_ids: tuple[str, ...]
    service_codes: tuple[str, ...]  # RT, TA, GPS, MD, DT, DHO
    actions: tuple[str, ...]  # journal, lookup

    @property
    def name(self) -> str:
        return f"vendors/{self.vendor_organization_number}/systems/{self.system_id}"


@dataclass(frozen=True)
class Sandbox:
    municipalities: tuple[SandboxMunicipality, ...]
    vendor_systems: tuple[SandboxVendorSystem, ...]
    #: Which EPJ service types (EpisodeOfCare.type codes) count as each service code.
    service_types: dict[str, tuple[str, ...]]
    #: (municipality organisation number, system id) pairs that have no agreement.
    without_agreement: frozenset[tuple[str, str]]

    def agreements(self) -> list[tuple[SandboxMunicipality, SandboxVendorSystem]]:
        return [
            (m, s)
            for m in self.municipalities
            for s in self.vendor_systems
            if (m.organization_number, s.system_id) not in self.without_agreement
        ]


FJORDVIK = SandboxMunicipality("964120005", "4699", "Fjordvik kommune", "push")
BJORKEDAL = SandboxMunicipality("971130008", "3499", "Bjørkedal kommune", "push")
NORDHEIM = SandboxMunicipality("980250008", "5099", "Nordheim kommune", "pull")

DISPENSER = SandboxVendorSystem(
    "912340007",
    "Dosetta AS",
    "dispenser-cloud",
    "Dosetta medisindispenser-sky",
    ("dosetta-dispenser",),
    ("MD",),
    ("journal", "lookup"),
)
SUPERVISION = SandboxVendorSystem(
    "923450009",
    "Nattevakt Tilsyn AS",
    "supervision",
    "Nattevakt digitalt tilsyn",
    ("nattevakt-tilsyn",),
    ("DT",),
    ("journal", "lookup"),
)
RESPONSE_CENTRE = SandboxVendorSystem(
    "934560000",
    "Trygg Respons AS",
    "response-centre",
    "Trygg Respons responssenter",
    ("trygg-respons", "trygg-respons-backup"),
    ("RT", "TA", "GPS"),
    ("journal", "lookup"),
)
HOME_FOLLOW_UP = SandboxVendorSystem(
    "945670002",
    "Helsemåler AS",
    "home-follow-up",
    "Helsemåler digital hjemmeoppfølging",
    ("helsemaler-dho",),
    ("DHO",),
    ("journal",),
)

SANDBOX = Sandbox(
    municipalities=(FJORDVIK, BJORKEDAL, NORDHEIM),
    vendor_systems=(DISPENSER, SUPERVISION, RESPONSE_CENTRE, HOME_FOLLOW_UP),
    service_types={
        "RT": ("6", "26"),
        "TA": ("6",),
        "GPS": ("26",),
        "MD": ("27",),
        "DT": ("28",),
        "DHO": ("DHO", "2.2.*"),
    },
    without_agreement=frozenset({(NORDHEIM.organization_number, SUPERVISION.system_id)}),
)
