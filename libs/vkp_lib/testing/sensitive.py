"""Finds health data in text: national ids in any common encoding, names and addresses.

An unkeyed hash of an 11-digit id is as good as the id (there are few enough to try them all), so
hashes count as the id too; only a keyed hash (pseudonym) is safe to log.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from vkp_lib.testing.data import TEST_PEOPLE, SyntheticPerson

_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _base64_forms(value: bytes) -> set[str]:
    """Base64 runs that appear whenever `value` is encoded, at any alignment in a larger blob."""
    forms: set[str] = set()
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * pad + value).decode()
            forms.add(encoded[4:-4])
    return {f for f in forms if len(f) >= 8}


def national_id_forms(national_id: str) -> dict[str, str]:
    """Each way the id may be written, with the name of the encoding."""
    raw = national_id.encode()
    forms = {
        national_id: "plain",
        f"{national_id[:6]} {national_id[6:]}": "spaced",
        f"{national_id[:6]}-{national_id[6:]}": "dashed",
        raw.hex(): "hex",
        hashlib.sha256(raw).hexdigest(): "sha256",
        hashlib.sha1(raw, usedforsecurity=False).hexdigest(): "sha1",
        hashlib.md5(raw, usedforsecurity=False).hexdigest(): "md5",
    }
    forms.update(dict.fromkeys(_base64_forms(raw), "base64"))
    return forms


@dataclass(frozen=True)
class Leak:
    what: str  # "national id (base64)", "name", "address"
    where: str

    def __str__(self) -> str:
        return f"{self.what} in {self.where}"


@dataclass
class SensitiveData:
    """The values no log line or exported span may contain."""

    exact: dict[str, str] = field(default_factory=dict)  # case-sensitive form -> label
    folded: dict[str, str] = field(default_factory=dict)  # lower-cased form -> label

    @classmethod
    def of(cls, people: Iterable[SyntheticPerson] = TEST_PEOPLE) -> SensitiveData:
        data = cls()
        for person in people:
            data.add_person(person)
        return data

    def add_national_id(self, national_id: str) -> None:
        for form, encoding in national_id_forms(national_id).items():
            label = f"national id ({encoding})"
            if encoding in ("hex", "sha256", "sha1", "md5"):
                self.folded[form.lower()] = label
            else:
                self.exact[form] = label

    def add_person(self, person: SyntheticPerson) -> None:
        self.add_national_id(person.national_id)
        self.folded[person.name.lower()] = "patient name"
        self.folded[f"{person.family_name}, {person.given_name}".lower()] = "patient name"
        self.folded[person.address.lower()] = "address"

    def find(self, text: str, where: str) -> list[Leak]:
        # JSON may escape any character as \uXXXX: search the unescaped text too.
        text += "\n" + _JSON_ESCAPE.sub(lambda m: chr(int(m[1], 16)), text)
        lowered = text.lower()
        found = {label for form, label in self.exact.items() if form in text}
        found |= {label for form, label in self.folded.items() if form in lowered}
        return [Leak(label, where) for label in sorted(found)]
