"""The page at `/`: the notes the simulator received (resources that came in transaction
bundles), newest first, with municipality, patient, kind, time and the Norwegian text.

The patient is shown by name when the note refers to a Patient the simulator holds, else by a
masked national id (`028500*****`), never the id in clear. Text comes from the narrative
(`text.div`) and, for a Composition, its sections; it is reduced to plain text and escaped.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from vkp_epj_sim.store import Stored

Json = dict[str, Any]
OSLO = ZoneInfo("Europe/Oslo")
_BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table", "ul", "ol"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(xhtml: str) -> str:
    """The text of an XHTML narrative, one line per block."""
    parser = _Text()
    parser.feed(xhtml)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def note_text(resource: Mapping[str, Any]) -> str:
    parts = []
    div = (resource.get("text") or {}).get("div")
    if isinstance(div, str):
        parts.append(plain_text(div))
    for section in resource.get("section") or []:
        title = section.get("title")
        text = plain_text((section.get("text") or {}).get("div") or "")
        if title or text:
            parts.append(f"{title}: {text}" if title and text else title or text)
    return "\n".join(p for p in parts if p)


def _concept(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, Mapping):
        return None
    for coding in value.get("coding") or []:
        shown = " ".join(str(x) for x in (coding.get("code"), coding.get("display")) if x)
        if shown:
            return shown
    text = value.get("text")
    return str(text) if text else None


def note_kind(resource: Mapping[str, Any]) -> str:
    for element in ("type", "code", "category", "class"):
        shown = _concept(resource.get(element))
        if shown:
            return f"{resource['resourceType']} · {shown}"
    return str(resource["resourceType"])


def masked(national_id: str) -> str:
    return national_id[:6] + "*" * max(0, len(national_id) - 6)


def _patient_reference(resource: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for element in ("subject", "patient"):
        reference = resource.get(element)
        if isinstance(reference, Mapping):
            return reference
    targets = resource.get("target")
    if isinstance(targets, list):
        for target in targets:
            if isinstance(target, Mapping) and str(target.get("reference", "")).startswith(
                "Patient/"
            ):
                return target
    return None


def patient_id(resource: Mapping[str, Any]) -> str | None:
    """The logical id of the Patient a note refers to, when it refers to one by id."""
    reference = _patient_reference(resource)
    value = str((reference or {}).get("reference", ""))
    return value.removeprefix("Patient/") if value.startswith("Patient/") else None


def _patient_name(patient: Mapping[str, Any]) -> str | None:
    for name in patient.get("name") or []:
        shown = " ".join([*name.get("given", []), name.get("family", "")]).strip()
        if shown:
            return shown
    return None


def note_patient(resource: Mapping[str, Any], patients: Mapping[str, Json]) -> str:
    reference = _patient_reference(resource)
    if reference is None:
        return "-"
    known = patients.get(patient_id(resource) or "")
    if known is not None:
        return _patient_name(known) or f"Patient/{known['id']}"
    identifier = reference.get("identifier")
    if isinstance(identifier, Mapping) and isinstance(identifier.get("value"), str):
        return masked(identifier["value"])
    return str(reference.get("reference") or "ukjent pasient")


def _local_time(instant: str) -> str:
    try:
        return dt.datetime.fromisoformat(instant).astimezone(OSLO).strftime("%d.%m.%Y %H:%M:%S")
    except ValueError:
        return instant


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .4rem .6rem;
  border-bottom: 1px solid #ddd; }
th { background: #f3f3f3; }
td.text { white-space: pre-line; }
"""


def render(notes: Sequence[Stored], patients: Mapping[str, Json], names: Mapping[str, str]) -> str:
    """The page, given the notes (newest first), the Patients they refer to by id, and the
    municipalities' names by kommunenummer."""
    rows = "\n".join(
        "<tr>"
        f"<td>{html.escape(names.get(n.municipality, n.municipality))}</td>"
        f"<td>{html.escape(note_patient(n.body, patients))}</td>"
        f"<td>{html.escape(note_kind(n.body))}</td>"
        f"<td>{html.escape(_local_time(n.last_updated))}</td>"
        f'<td class="text">{html.escape(note_text(n.body))}</td>'
        "</tr>"
        for n in notes
    )
    empty = "" if notes else '<tr><td colspan="5">Ingen notater mottatt ennå.</td></tr>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="no"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="5">'
        "<title>EPJ-simulator: mottatte notater</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>EPJ-simulator: mottatte notater</h1>"
        f"<p>{len(notes)} siste, nyeste først.</p>"
        "<table><thead><tr><th>Kommune</th><th>Pasient</th><th>Type</th><th>Mottatt</th>"
        f"<th>Tekst</th></tr></thead><tbody>\n{rows}{empty}\n</tbody></table>"
        "</body></html>\n"
    )
