"""Times and words as a nurse writes them: Norwegian local time, sentences, numbers, units."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp

from vkp.common.v1 import common_pb2, event_pb2

OSLO = ZoneInfo("Europe/Oslo")

#: Between the start and end of a time span (an en dash, U+2013), as in 08:00-08:01.
EN_DASH = "\u2013"
#: The Norwegian word of each reported severity (vkp-severity-level-v090 displays).
SEVERITY_WORDS = {
    common_pb2.SEVERITY_NORMAL: "Normal",
    common_pb2.SEVERITY_MODERATE: "Moderat",
    common_pb2.SEVERITY_SERIOUS: "Alvorlig",
    common_pb2.SEVERITY_CRITICAL: "Kritisk",
}

#: How a nurse writes a few UCUM units; any other unit is written as its UCUM code.
UNIT_DISPLAYS = {"mm[Hg]": "mmHg", "Cel": "°C", "[degF]": "°F", "{beats}/min": "/min"}


def local(stamp: Timestamp) -> datetime:
    """A protobuf timestamp in Norwegian local time (aware)."""
    return stamp.ToDatetime(tzinfo=UTC).astimezone(OSLO)


def clock(when: datetime) -> str:
    return when.strftime("%H:%M")


def date(when: datetime) -> str:
    return when.strftime("%d.%m.%Y")


def clock_on(when: datetime, day_of: datetime) -> str:
    """HH:MM, with the date in front when `when` falls on another day than `day_of`."""
    if when.date() == day_of.date():
        return clock(when)
    return f"{date(when)} {clock(when)}"


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def lowered(text: str) -> str:
    return text[:1].lower() + text[1:]


def sentence(text: str) -> str:
    """The text as a sentence: stripped, ending with a full stop unless it ends otherwise."""
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def number(value: float) -> str:
    """A measured value as a Norwegian writes it: 72, 37,5."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value).replace(".", ",")


def unit_display(unit: str) -> str:
    return UNIT_DISPLAYS.get(unit, unit)


def severity_sentence(event: event_pb2.Event) -> str:
    """The severity, when it says more than that all is as usual (a nurse writes no "Normal")."""
    if event.severity == common_pb2.SEVERITY_NORMAL:
        return ""
    word = SEVERITY_WORDS.get(event.severity)
    return f"Alvorlighetsgrad: {word}." if word else ""


def device_sentence(event: event_pb2.Event, label: str) -> str:
    if not event.HasField("device"):
        return ""
    device = event.device
    named = f"{device.display} ({device.device_id})" if device.display else device.device_id
    return f"{label}: {named}."


def joined(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)
