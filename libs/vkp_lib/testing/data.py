"""Synthetic people for tests: deterministic, with synthetic national ids (month + 80).

They stand for patients in tests. Their ids, names and addresses must never appear in logs or
exported spans; the leak guard checks for exactly these.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vkp_lib.national_id import synthetic_national_id

_GIVEN = ["Kari", "Ola", "Ingrid", "Per", "Solveig", "Arne", "Sigrid", "Bjørn", "Astrid", "Knut"]
_FAMILY = ["Nordmann", "Bakken", "Haugland", "Solberg", "Fjeldstad", "Løvaas", "Strand", "Myhre"]
_STREETS = ["Storgata", "Kirkevegen", "Fjordgløtt", "Bjørkelia", "Granstien", "Skolebakken"]


@dataclass(frozen=True)
class SyntheticPerson:
    national_id: str
    given_name: str
    family_name: str
    address: str

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"


def synthetic_people(count: int = 8, seed: int = 2026) -> list[SyntheticPerson]:
    rng = random.Random(seed)
    return [
        SyntheticPerson(
            national_id=synthetic_national_id(rng),
            given_name=_GIVEN[i % len(_GIVEN)],
            family_name=_FAMILY[(i * 3) % len(_FAMILY)],
            address=f"{_STREETS[i % len(_STREETS)]} {rng.randint(1, 120)}",
        )
        for i in range(count)
    ]


TEST_PEOPLE = synthetic_people()
