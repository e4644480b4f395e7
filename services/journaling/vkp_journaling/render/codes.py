"""The code systems of the notes: the VKP code systems 0.9.0, whose displays come from
`codesystems.json` beside this module (a verbatim copy of ../shared/domain/vkp-codesystems.json),
and the HL7, LOINC and UCUM systems the resources name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from vkp_journaling.render.note import NotRenderable

VKP = "http://ehelse.no/fhir/CodeSystem/"
ALERT_CODE_SYSTEM = VKP + "vkp-alert-code-v090"
MEDICATION_DISPENSE_EVENT_SYSTEM = VKP + "vkp-medicationdispense-events-v090"
ENCOUNTER_MODE_SYSTEM = VKP + "vkp-encounter-mode-v090"
ENCOUNTER_REASON_SYSTEM = VKP + "vkp-encounter-reason-v090"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Concept:
    display: str
    definition: str


@cache
def code_systems() -> dict[str, dict[str, Concept]]:
    """The VKP code systems: url -> code -> concept, nested concepts flattened."""
    text = resources.files("vkp_journaling.render").joinpath("codesystems.json").read_text("utf-8")
    systems: dict[str, dict[str, Concept]] = {}

    def add(table: dict[str, Concept], concepts: Sequence[dict[str, Any]]) -> None:
        for item in concepts:
            table[item["code"]] = Concept(item.get("display", ""), item.get("definition", ""))
            add(table, item.get("concepts", []))

    for system in json.loads(text):
        table = systems.setdefault(system["url"], {})
        add(table, system.get("concepts", []))
    return systems


def concept(system: str, code: str) -> Concept:
    found = code_systems()[system].get(code)
    if found is None:
        raise NotRenderable(f"code {code!r} is not in {system}")
    return found


def coding(system: str, code: str) -> dict[str, str]:
    """A Coding of a VKP code system, with the concept's display."""
    return {"system": system, "code": code, "display": concept(system, code).display}
