"""Where the patient, the device and the vendor organisation go: logical references, by
identifier (FHIR JSON, as `resources` builds it)."""

from __future__ import annotations

from typing import Any

from vkp.common.v1 import common_pb2, event_pb2
from vkp_journaling.render.note import (
    DEVICE_IDENTIFIER_SYSTEM_PREFIX,
    ORGANIZATION_NUMBER_SYSTEM,
    NoteContext,
    NotRenderable,
)
from vkp_lib.national_id import (
    IDENTIFIER_SYSTEMS,
    InvalidNationalId,
    NationalIdKind,
    kind_of_type,
    parse_national_id,
)


def _stated_kind(patient: common_pb2.NationalId) -> NationalIdKind | None:
    """The kind the sender stated (None: unspecified, or a value this contract does not know)."""
    try:
        return kind_of_type(common_pb2.NationalIdType.Name(patient.type))
    except ValueError:
        return None


def _patient_system(patient: common_pb2.NationalId) -> str:
    """The identifier system of the patient's id: its stated type, else what its digits say."""
    kind = _stated_kind(patient)
    if kind is None:
        try:
            kind = parse_national_id(patient.value, allow_synthetic=True).kind
        except InvalidNationalId as exc:
            raise NotRenderable(f"the patient id is invalid: {exc.reason}") from None
    system = IDENTIFIER_SYSTEMS.get(kind)
    if system is None:
        raise NotRenderable(f"a patient id of kind {kind.value} has no national identifier system")
    return system


def patient(event: event_pb2.Event) -> dict[str, Any]:
    """A Reference to the patient."""
    return {
        "type": "Patient",
        "identifier": {"system": _patient_system(event.patient), "value": event.patient.value},
    }


def device(event: event_pb2.Event, context: NoteContext) -> dict[str, Any] | None:
    """A Reference to the reported device (None: the event names none)."""
    if not event.HasField("device"):
        return None
    reported = event.device
    reference: dict[str, Any] = {
        "type": "Device",
        "identifier": {
            "system": DEVICE_IDENTIFIER_SYSTEM_PREFIX + context.vendor_organization_number,
            "value": reported.device_id,
        },
    }
    if reported.display:
        reference["display"] = reported.display
    return reference


def vendor(context: NoteContext) -> dict[str, Any]:
    """A Reference to the vendor organisation."""
    return {
        "type": "Organization",
        "identifier": {
            "system": ORGANIZATION_NUMBER_SYSTEM,
            "value": context.vendor_organization_number,
        },
        "display": context.vendor_name or context.vendor_organization_number,
    }
