"""The synthetic patients of the sandbox municipalities: deterministic from a seed.

`sandbox_patients(seed)` gives the same people for the same seed, 20 per sandbox municipality,
each with a synthetic national id (month + 80; a few D-numbers), a Norwegian name and address
with an access hint, door-lock system and zone, a household, next of kin, a GP, services, a
visit plan and critical information. Which services a patient has follows their place in the
municipality's list, so every municipality has, for every service type, patients with it
active, and some with ended services only:

| index | services |
|---|---|
| 0-14 | active `6`, `26`, `27`, `28`, `DHO` in turn (three each); some another, or an ended one |
| 15 | active `2.2.1` (a local code for digital home follow-up, matched by the pattern `2.2.*`) |
| 16-18 | ended services only |
| 19 | none |

Indexes 5 and 17 have D-numbers. `select_patients` finds the ones a test needs. Dates of
services are fixed; visit times are times of day (the records put them on the day they are
built). Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vkp_epj_sim.codes import DNR_SYSTEM, FNR_SYSTEM
from vkp_lib.national_id import NationalIdKind, synthetic_national_id
from vkp_lib.sandbox import SANDBOX, SandboxMunicipality

DEFAULT_SEED = 2026
PATIENTS_PER_MUNICIPALITY = 20
#: The service types each municipality has three active patients of, in turn.
CORE_SERVICE_TYPES = ("6", "26", "27", "28", "DHO")
LOCAL_DHO_TYPE = "2.2.1"
D_NUMBER_INDEXES = frozenset({5, 17})
ENDED_ONLY_INDEXES = range(16, 19)

_FEMALE = [
    "Aslaug", "Bjørg", "Dagny", "Gunvor", "Ingeborg", "Jorunn", "Marit", "Randi",
    "Sigrunn", "Torborg", "Åse", "Liv", "Ragnhild", "Synnøve", "Eldbjørg", "Gudrun",
]  # fmt: skip
_MALE = [
    "Arvid", "Einar", "Finn", "Gunnar", "Halvor", "Ivar", "Jostein", "Kjell",
    "Leif", "Magne", "Oddvar", "Rolf", "Sverre", "Torleif", "Øystein", "Håkon",
]  # fmt: skip
_MIDDLE = ["Berg", "Dahl", "Moe", "Lie", "Vik", "Holm"]
_FAMILY = [
    "Aasen", "Brekke", "Dahle", "Eide", "Fossum", "Grønli", "Hovland", "Isaksen", "Jacobsen",
    "Kvamme", "Lunde", "Moen", "Nygård", "Opsahl", "Rønning", "Sæther", "Tveit", "Ulvik",
    "Vatne", "Østby",
]  # fmt: skip
_PLACES = {
    "4699": ("Fjordvik", "5790", ["Sjøvegen", "Naustvegen", "Kaigata", "Lyngheia", "Fjellvegen"]),
    "3499": ("Bjørkedal", "2690", ["Elvegata", "Furulia", "Tømmervegen", "Skogvegen", "Myrvegen"]),
    "5099": ("Nordheim", "7790", ["Nordlysvegen", "Havnegata", "Moløkka", "Bakkelia", "Varden"]),
}
_ZONES = ["Sone Nord", "Sone Sør", "Sentrum"]
_ACCESS_HINTS = [
    "Inngang fra baksiden, 2. etg",
    "Nøkkelboks ved garasjen",
    "Ringeklokka virker ikke, bank på kjøkkenvinduet",
    "Inngang via verandaen, ytterdøra er sperret",
    "Bratt innkjørsel, parker nede ved vegen",
    "3. etg, heis i oppgang B",
    "Sokkelleilighet, inngang på gavlveggen",
]
_DOOR_LOCKS = ["LåsNett Hjem", "Nøkkelfri Omsorg", "Dørvokter 3", None]
_HOUSEHOLDS = [
    "Bor alene",
    "Bor alene, katt",
    "Bor med ektefelle",
    "Bor med ektefelle, hund",
    "Bor alene, hund (vennlig)",
    "Bor med sønn",
    "Bor i omsorgsbolig",
]
_RELATIONS = [
    ("DAU", "Datter"),
    ("SON", "Sønn"),
    ("NIECE", "Niese"),
    ("NEPHEW", "Nevø"),
    ("SIS", "Søster"),
    ("BRO", "Bror"),
    ("FRND", "Venn"),
]
_VISITS = [
    (dt.time(8, 0), dt.time(8, 45), "Morgenstell og medisiner"),
    (dt.time(12, 30), dt.time(13, 0), "Tilsyn og middag"),
    (dt.time(16, 0), dt.time(16, 20), "Medisinering"),
    (dt.time(20, 0), dt.time(20, 30), "Kveldsstell"),
    (dt.time(23, 0), dt.time(23, 15), "Tilsyn natt"),
]
_ALLERGIES = ["Penicillin", "Nøtter", "Lateks", "Acetylsalisylsyre", "Sulfonamider", "Veps"]
_REACTIONS = ["Anafylaksi", "Utslett", "Pustebesvær", "Hevelse i ansiktet"]
_FLAGS = [
    ("safety", "Hund i huset, ring før ankomst"),
    ("behavioral", "Demens, kan bli urolig ved ukjente"),
    ("safety", "Oksygenbehandling, ikke åpen flamme"),
    ("clinical", "Smittevern: MRSA-bærer"),
    ("contact", "Hørselshemmet, bank hardt"),
    ("clinical", "Pacemaker"),
]


@dataclass(frozen=True)
class Address:
    line: str
    postal_code: str
    city: str
    district: str
    access_hint: str
    door_lock: str | None
    zone: str


@dataclass(frozen=True)
class Relative:
    id: str
    given: str
    family: str
    relationship: str  # v3 RoleCode: DAU, SON, ...
    relationship_display: str
    phone: str

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"


@dataclass(frozen=True)
class GeneralPractitioner:
    id: str
    municipality: str
    given: str
    family: str
    hpr_number: str
    phone: str

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"


@dataclass(frozen=True)
class Service:
    id: str
    type_code: str
    status: str  # "active" or "finished"
    start: dt.date
    end: dt.date | None

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Visit:
    start: dt.time
    end: dt.time
    description: str


@dataclass(frozen=True)
class Allergy:
    id: str
    substance: str
    reaction: str
    criticality: str  # "high" or "low"


@dataclass(frozen=True)
class Warning:
    id: str
    category: str  # flag-category code
    text: str


@dataclass(frozen=True)
class SeedPatient:
    """One synthetic patient; `id` is the Patient's logical id, `municipality` its
    kommunenummer. Never log `national_id` or the name."""

    id: str
    index: int
    municipality: str
    national_id: str
    identifier_system: str
    given: str
    middle: str | None
    family: str
    gender: str
    birth_date: dt.date
    phone: str
    address: Address
    household: str
    next_of_kin: tuple[Relative, ...]
    gp: GeneralPractitioner
    services: tuple[Service, ...]
    visits: tuple[Visit, ...]
    allergies: tuple[Allergy, ...]
    warnings: tuple[Warning, ...]

    def __repr__(self) -> str:  # no national id or name in test output
        return f"SeedPatient(id={self.id!r})"

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.given, self.middle, self.family) if p)

    @property
    def reference(self) -> str:
        return f"Patient/{self.id}"

    @property
    def is_d_number(self) -> bool:
        return self.identifier_system == DNR_SYSTEM

    @property
    def active_service_types(self) -> frozenset[str]:
        return frozenset(s.type_code for s in self.services if s.active)

    @property
    def ended_service_types(self) -> frozenset[str]:
        return frozenset(s.type_code for s in self.services if not s.active)

    @property
    def care_plan_id(self) -> str | None:
        return f"{self.id}-visits" if self.visits else None


def _phone(rng: random.Random) -> str:
    return f"{rng.choice('49')}{rng.randint(0, 9_999_999):07d}"


def _date_between(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randint(0, (last - first).days))


def _national_id(
    rng: random.Random, birth_date: dt.date, gender: str, kind: NationalIdKind, taken: set[str]
) -> str:
    """A synthetic id whose individual number's last digit says the gender (odd: male)."""
    while True:
        value = synthetic_national_id(rng, birth_date=birth_date, kind=kind)
        if int(value[8]) % 2 == (gender == "male") and value not in taken:
            taken.add(value)
            return value


def _practitioners(rng: random.Random, municipality: str) -> list[GeneralPractitioner]:
    return [
        GeneralPractitioner(
            id=f"{municipality}-gp{n}",
            municipality=municipality,
            given=rng.choice(_FEMALE + _MALE),
            family=rng.choice(_FAMILY),
            hpr_number=str(rng.randint(1_000_000, 9_999_999)),
            phone=_phone(rng),
        )
        for n in range(1, 4)
    ]


def _services(rng: random.Random, patient_id: str, index: int) -> tuple[Service, ...]:
    active: list[str] = []
    ended: list[str] = []
    if index < len(CORE_SERVICE_TYPES) * 3:
        active.append(CORE_SERVICE_TYPES[index % len(CORE_SERVICE_TYPES)])
        if rng.random() < 0.3:
            active.append(rng.choice([t for t in CORE_SERVICE_TYPES if t not in active]))
        if rng.random() < 0.3:
            ended.append(rng.choice(CORE_SERVICE_TYPES))
    elif index == 15:
        active.append(LOCAL_DHO_TYPE)
    elif index in ENDED_ONLY_INDEXES:
        ended = rng.sample(CORE_SERVICE_TYPES, rng.randint(1, 2))
    services: list[Service] = []
    for code in active:
        start = _date_between(rng, dt.date(2019, 1, 1), dt.date(2026, 6, 30))
        services.append(
            Service(f"{patient_id}-eoc{len(services) + 1}", code, "active", start, None)
        )
    for code in ended:
        start = _date_between(rng, dt.date(2016, 1, 1), dt.date(2022, 12, 31))
        end = min(start + dt.timedelta(days=rng.randint(120, 900)), dt.date(2025, 12, 31))
        services.append(
            Service(f"{patient_id}-eoc{len(services) + 1}", code, "finished", start, end)
        )
    return tuple(services)


def _patient(
    rng: random.Random,
    place: SandboxMunicipality,
    index: int,
    gps: Sequence[GeneralPractitioner],
    taken: set[str],
) -> SeedPatient:
    municipality = place.municipality_number
    patient_id = f"{municipality}-p{index + 1:02d}"
    gender = rng.choice(["female", "male"])
    given = rng.choice(_FEMALE if gender == "female" else _MALE)
    family = rng.choice(_FAMILY)
    middle = rng.choice(_MIDDLE) if rng.random() < 0.3 else None
    birth_date = _date_between(rng, dt.date(1928, 1, 1), dt.date(1960, 12, 31))
    kind = NationalIdKind.DNR if index in D_NUMBER_INDEXES else NationalIdKind.FNR
    national_id = _national_id(rng, birth_date, gender, kind, taken)
    city, postal_code, streets = _PLACES[municipality]
    address = Address(
        line=f"{rng.choice(streets)} {rng.randint(1, 80)}",
        postal_code=postal_code,
        city=city,
        district=place.display_name,
        access_hint=rng.choice(_ACCESS_HINTS),
        door_lock=rng.choice(_DOOR_LOCKS),
        zone=rng.choice(_ZONES),
    )
    relatives = tuple(
        Relative(
            id=f"{patient_id}-nok{n}",
            given=rng.choice(_FEMALE + _MALE),
            family=rng.choice([family, *_FAMILY]),
            relationship=code,
            relationship_display=display,
            phone=_phone(rng),
        )
        for n, (code, display) in enumerate(rng.sample(_RELATIONS, rng.randint(1, 2)), start=1)
    )
    services = _services(rng, patient_id, index)
    visits: tuple[Visit, ...] = ()
    if any(s.active for s in services):
        chosen = sorted(rng.sample(range(len(_VISITS)), rng.randint(2, 4)))
        visits = tuple(Visit(*_VISITS[i]) for i in chosen)
    allergies = tuple(
        Allergy(
            f"{patient_id}-allergy{n}",
            substance,
            rng.choice(_REACTIONS),
            rng.choice(["high", "low"]),
        )
        for n, substance in enumerate(rng.sample(_ALLERGIES, rng.choice([0, 0, 1, 1, 2])), 1)
    )
    warnings = tuple(
        Warning(f"{patient_id}-flag{n}", category, text)
        for n, (category, text) in enumerate(rng.sample(_FLAGS, rng.choice([0, 0, 1, 2])), 1)
    )
    return SeedPatient(
        id=patient_id,
        index=index,
        municipality=municipality,
        national_id=national_id,
        identifier_system=DNR_SYSTEM if kind is NationalIdKind.DNR else FNR_SYSTEM,
        given=given,
        middle=middle,
        family=family,
        gender=gender,
        birth_date=birth_date,
        phone=_phone(rng),
        address=address,
        household=rng.choice(_HOUSEHOLDS),
        next_of_kin=relatives,
        gp=rng.choice(gps),
        services=services,
        visits=visits,
        allergies=allergies,
        warnings=warnings,
    )


def sandbox_practitioners(seed: int = DEFAULT_SEED) -> list[GeneralPractitioner]:
    """The GPs of the sandbox municipalities, three each."""
    rng = random.Random(f"{seed}/gp")  # noqa: S311 - synthetic data, not secrecy
    return [gp for m in SANDBOX.municipalities for gp in _practitioners(rng, m.municipality_number)]


def sandbox_patients(seed: int = DEFAULT_SEED) -> list[SeedPatient]:
    """The patients of every sandbox municipality, in municipality order; the same for the
    same seed."""
    gps = sandbox_practitioners(seed)
    rng = random.Random(f"{seed}/patients")  # noqa: S311 - synthetic data
    taken: set[str] = set()
    return [
        _patient(
            rng,
            place,
            index,
            [g for g in gps if g.municipality == place.municipality_number],
            taken,
        )
        for place in SANDBOX.municipalities
        for index in range(PATIENTS_PER_MUNICIPALITY)
    ]


def select_patients(
    patients: Iterable[SeedPatient],
    *,
    municipality: str | None = None,
    active: str | None = None,
    ended_only: bool = False,
    d_number: bool | None = None,
) -> list[SeedPatient]:
    """The patients that match every criterion given: in `municipality` (kommunenummer), with
    an active service of type `active`, with ended services and no active one, with or
    without a D-number."""
    return [
        p
        for p in patients
        if (municipality is None or p.municipality == municipality)
        and (active is None or active in p.active_service_types)
        and (not ended_only or (p.ended_service_types and not p.active_service_types))
        and (d_number is None or p.is_d_number == d_number)
    ]
