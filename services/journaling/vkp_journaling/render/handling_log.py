"""An alarm's handling log: the steps of one alarm segment as one note (DESIGN.md §3, "Alarms").

The transaction Bundle holds, each a conditional create on `<entry id>/<n>` like every note:

1. a `Composition` (status final, LOINC 34133-9 "Summary of episode note", category
   vkp-composition-category-v090 1 "Trygghet og mestring", the patient, the vendor as author,
   date = the last step's time): the timeline as `event`s (each step's vkp-composition-event-v090
   code and time, in time order), and three sections (vkp-composition-section-v090): 1.2 the
   event (what alarm, triage, severity, where; with the DetectedIssue and Location as entries),
   1.1 the follow-up (the timeline with responders and texts) and 2 the compiled text;
2. a `DetectedIssue` for the alert (vkp-alert-code-v090 2, 3, 6, 7 or 7.1; severity from the
   highest the steps report; the latest triage, vkp-triage-v090, as its evidence);
3. a `Location` when a step says where the patient was (a GPS position, or words): the latest
   position and the latest words.

The narrative (Norwegian, bokmål) reads as a nurse writes a log, one line a paragraph: the
alarm and its span, closed or not (and which segment), triage and severity, where, then each
step with its time, responder and text. It names neither the patient nor the national id.

Pure, like the rest of render/: the steps are given (the stored log entry carries them).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from vkp.common.v1 import common_pb2, event_pb2
from vkp_journaling.domain.alarm import ALARM_LOG, unpack_steps
from vkp_journaling.render.codes import LOINC_SYSTEM, VKP, coding, concept
from vkp_journaling.render.note import (
    NOTE_IDENTIFIER_SYSTEM,
    NoteContext,
    NotRenderable,
    full_url,
    note_key,
)
from vkp_journaling.render.references import device, patient, vendor
from vkp_journaling.render.resources import render_note, transaction
from vkp_journaling.render.words import (
    EN_DASH,
    SEVERITY_WORDS,
    capitalized,
    clock,
    clock_on,
    date,
    local,
    sentence,
)

Json = dict[str, Any]
ALERT_CODE_SYSTEM = VKP + "vkp-alert-code-v090"
COMPOSITION_EVENT_SYSTEM = VKP + "vkp-composition-event-v090"
COMPOSITION_CATEGORY_SYSTEM = VKP + "vkp-composition-category-v090"
COMPOSITION_SECTION_SYSTEM = VKP + "vkp-composition-section-v090"
TRIAGE_SYSTEM = VKP + "vkp-triage-v090"
XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"
#: LOINC 34133-9, as LOINC names it (its long common name).
HANDLING_LOG_TYPE = {
    "system": LOINC_SYSTEM,
    "code": "34133-9",
    "display": "Summary of episode note",
}
#: "Trygghet og mestring".
CATEGORY = "1"
#: The sections: the event, the follow-up, the compiled text.
EVENT_SECTION, FOLLOW_UP_SECTION, COMPILED_SECTION = "1.2", "1.1", "2"
#: The Norwegian word of each triage colour (vkp-triage-v090 names them in English).
TRIAGE_WORDS = {
    "R": "rød",
    "O": "oransje",
    "Y": "gul",
    "G": "grønn",
    "B": "blå",
    "BL": "svart",
    "NR": "ikke angitt",
}
_ISSUE_SEVERITIES = {
    common_pb2.SEVERITY_NORMAL: "low",
    common_pb2.SEVERITY_MODERATE: "moderate",
    common_pb2.SEVERITY_SERIOUS: "high",
    common_pb2.SEVERITY_CRITICAL: "high",
}
_SEVERITY_RANK = {
    common_pb2.SEVERITY_NORMAL: 1,
    common_pb2.SEVERITY_MODERATE: 2,
    common_pb2.SEVERITY_SERIOUS: 3,
    common_pb2.SEVERITY_CRITICAL: 4,
}


def _step(event: event_pb2.Event) -> event_pb2.AlarmStep:
    if event.WhichOneof("payload") != "alarm_step":
        raise NotRenderable("a handling log is made of alarm steps only")
    return event.alarm_step


def in_time_order(steps: Sequence[event_pb2.Event]) -> list[event_pb2.Event]:
    """The steps by when they happened; steps at the same time in timeline order (registered
    before handling started, ...), then as given."""

    def key(event: event_pb2.Event) -> tuple[int, int, int]:
        stamp = event.occurred_time
        return stamp.seconds, stamp.nanos, int(_step(event).timeline_code)

    return sorted(steps, key=key)


class _Log:
    """What the log's parts share: its steps in time order and what they say together."""

    def __init__(
        self, steps: Sequence[event_pb2.Event], context: NoteContext, segment: int
    ) -> None:
        if not steps:
            raise NotRenderable("a handling log needs at least one step")
        self.steps = in_time_order(steps)
        self.context = context
        self.segment = segment
        self.first = self.steps[0]
        self.last = self.steps[-1]
        self.start = local(self.first.occurred_time)
        self.end = local(self.last.occurred_time)
        self.closed = any(_step(e).closes_alarm for e in self.steps)
        # The latest a step says of the alert, the triage and the place.
        self.alert_code = _step(self.last).alert_code
        self.triage = next(
            (_step(e).triage_code for e in reversed(self.steps) if _step(e).triage_code), ""
        )
        positioned = [e for e in self.steps if _step(e).HasField("position")]
        self.position = _step(positioned[-1]).position if positioned else None
        self.place = next(
            (
                _step(e).location_text.strip()
                for e in reversed(self.steps)
                if _step(e).location_text.strip()
            ),
            "",
        )
        reported = [e.severity for e in self.steps if e.severity in _SEVERITY_RANK]
        self.severity = max(reported, key=_SEVERITY_RANK.__getitem__) if reported else None
        self.device_event = next((e for e in self.steps if e.HasField("device")), None)

    def identifier(self, n: int) -> Json:
        return {"system": NOTE_IDENTIFIER_SYSTEM, "value": note_key(self.context.entry_id, n)}

    def meta(self) -> Json | None:
        system = self.context.vendor_system
        return {"source": f"urn:vkp:{system}"} if system else None

    @property
    def has_location(self) -> bool:
        return self.position is not None or bool(self.place)


# -- the text ----------------------------------------------------------------------------------


def _degrees(value: float, positive: str, negative: str) -> str:
    return f"{abs(value):.5f}".replace(".", ",") + f" {positive if value >= 0 else negative}"


def _where(log: _Log) -> str:
    parts = []
    if log.place:
        parts.append(log.place)
    if log.position is not None:
        point = (
            f"{_degrees(log.position.latitude, 'N', 'S')}, "
            f"{_degrees(log.position.longitude, 'Ø', 'V')}"
        )
        if log.position.accuracy_meters:
            point += f" (±{round(log.position.accuracy_meters)} m)"
        parts.append(f"posisjon {point}" if log.place else f"Posisjon {point}")
    return sentence(f"Sted: {', '.join(parts)}") if parts else ""


def _alarm_line(log: _Log) -> str:
    kind = concept(ALERT_CODE_SYSTEM, log.alert_code).display
    span = f"{date(log.start)} kl. {clock(log.start)}"
    if log.end != log.start:
        same_day = log.end.date() == log.start.date()
        span += EN_DASH + (clock(log.end) if same_day else f"{date(log.end)} kl. {clock(log.end)}")
    line = sentence(f"{kind} {span}")
    if log.closed:
        status = "Alarmen er avsluttet."
    else:
        status = "Alarmen var ikke avsluttet da loggen ble journalført."
    if log.segment > 1 or not log.closed:
        status += f" Del {log.segment} av håndteringsloggen."
    return f"{line} {status}"


def _assessment_line(log: _Log) -> str:
    parts = []
    if log.triage:
        parts.append(sentence(f"Triage: {TRIAGE_WORDS.get(log.triage, log.triage)}"))
    if log.severity is not None and log.severity != common_pb2.SEVERITY_NORMAL:
        parts.append(sentence(f"Alvorlighetsgrad: {SEVERITY_WORDS[log.severity]}"))
    return " ".join(parts)


def _step_line(log: _Log, event: event_pb2.Event) -> str:
    step = _step(event)
    line = f"{clock_on(local(event.occurred_time), log.start)} "
    line += capitalized(concept(COMPOSITION_EVENT_SYSTEM, step.timeline_code).display)
    if step.responder.strip():
        line += f" ({step.responder.strip()})"
    if step.text.strip():
        line += f": {step.text.strip()}"
    return sentence(line)


def _event_lines(log: _Log) -> list[str]:
    return [line for line in (_alarm_line(log), _assessment_line(log), _where(log)) if line]


def _timeline_lines(log: _Log) -> list[str]:
    return [_step_line(log, event) for event in log.steps]


def handling_log_text(
    steps: Sequence[event_pb2.Event], context: NoteContext, segment: int
) -> list[str]:
    """The log's Norwegian (bokmål) text, a paragraph a line: the alarm, then its timeline."""
    log = _Log(steps, context, segment)
    return [*_event_lines(log), "Forløp:", *_timeline_lines(log)]


def _div(lines: Sequence[str]) -> Json:
    paragraphs = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines)
    return {"status": "generated", "div": f'<div xmlns="{XHTML_NAMESPACE}">{paragraphs}</div>'}


# -- the resources -----------------------------------------------------------------------------


def _resource(resource_type: str, **elements: Any) -> Json:
    return {
        "resourceType": resource_type,
        **{name: value for name, value in elements.items() if value is not None},
    }


def _composition(log: _Log) -> Json:
    event_lines, timeline = _event_lines(log), _timeline_lines(log)
    lines = [*event_lines, "Forløp:", *timeline]
    kind = concept(ALERT_CODE_SYSTEM, log.alert_code).display
    title = f"Håndteringslogg: {kind}" + (f" (del {log.segment})" if log.segment > 1 else "")
    references = [{"reference": full_url(log.context, 2)}]
    if log.has_location:
        references.append({"reference": full_url(log.context, 3)})
    return _resource(
        "Composition",
        meta=log.meta(),
        text=_div(lines),
        identifier=log.identifier(1),
        status="final",
        type={"coding": [HANDLING_LOG_TYPE]},
        category=[{"coding": [coding(COMPOSITION_CATEGORY_SYSTEM, CATEGORY)]}],
        subject=patient(log.first),
        date=log.end.isoformat(),
        author=[vendor(log.context)],
        title=title,
        event=[
            {
                "code": [{"coding": [coding(COMPOSITION_EVENT_SYSTEM, _step(e).timeline_code)]}],
                "period": {"start": local(e.occurred_time).isoformat()},
            }
            for e in log.steps
        ],
        section=[
            {
                "title": "Beskrivelse av hendelse",
                "code": {"coding": [coding(COMPOSITION_SECTION_SYSTEM, EVENT_SECTION)]},
                "text": _div(event_lines),
                "entry": references,
            },
            {
                "title": "Beskrivelse av oppfølging",
                "code": {"coding": [coding(COMPOSITION_SECTION_SYSTEM, FOLLOW_UP_SECTION)]},
                "text": _div(timeline),
            },
            {
                "title": "Sammenstilt tekst",
                "code": {"coding": [coding(COMPOSITION_SECTION_SYSTEM, COMPILED_SECTION)]},
                "text": _div(lines),
            },
        ],
    )


def _detected_issue(log: _Log) -> Json:
    registered = next((_step(e).text.strip() for e in log.steps if _step(e).text.strip()), "")
    return _resource(
        "DetectedIssue",
        meta=log.meta(),
        text=_div(_event_lines(log)),
        identifier=[log.identifier(2)],
        status="final",
        code={"coding": [coding(ALERT_CODE_SYSTEM, log.alert_code)]},
        severity=_ISSUE_SEVERITIES.get(log.severity) if log.severity is not None else None,
        patient=patient(log.first),
        identifiedDateTime=log.start.isoformat(),
        author=device(log.device_event, log.context) if log.device_event else None,
        evidence=(
            [{"code": [{"coding": [coding(TRIAGE_SYSTEM, log.triage)]}]}] if log.triage else None
        ),
        detail=registered or None,
    )


def _location(log: _Log) -> Json:
    position = None
    if log.position is not None:
        position = {"longitude": log.position.longitude, "latitude": log.position.latitude}
    where = _where(log)
    return _resource(
        "Location",
        meta=log.meta(),
        text=_div([where]),
        identifier=[log.identifier(3)],
        status="active",
        description=log.place or None,
        mode="instance",
        position=position,
    )


def render_handling_log(
    steps: Sequence[event_pb2.Event], context: NoteContext, segment: int
) -> dict[str, Any]:
    """The transaction Bundle (a JSON-ready dict, R4 as the R4B models write it) of an alarm
    segment's handling log: every entry a conditional create on its note identifier. The same
    steps (in any order), context and segment give the same Bundle."""
    log = _Log(steps, context, segment)
    resources = [_composition(log), _detected_issue(log)]
    if log.has_location:
        resources.append(_location(log))
    return transaction(resources, context)


def render_entry_note(kind: str, payload: bytes, context: NoteContext) -> dict[str, Any]:
    """The note of a stored entry, by its kind: a handling log (ALARM_LOG: its payload the
    packed steps, domain.alarm.pack_steps) or one event's note (its payload the event)."""
    if kind == ALARM_LOG:
        try:
            segment, steps = unpack_steps(payload)
        except ValueError:
            raise NotRenderable("the handling log's payload is damaged") from None
        return render_handling_log(
            [event_pb2.Event.FromString(step) for step in steps], context, segment
        )
    return render_note(event_pb2.Event.FromString(payload), context)
