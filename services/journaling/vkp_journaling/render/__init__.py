"""One welfare-technology event as one journal note: a FHIR R4 transaction Bundle and its
Norwegian (bokmål) text, as a nurse reads them in the EPJ (DESIGN.md §3, "What becomes a note").

What each payload becomes:

- medication_dispense: a `MedicationDispense` (status completed, `type` from
  vkp-medicationdispense-events-v090, whenPrepared = planned time, whenHandedOver = actual time).
- dispenser_alert: a `DetectedIssue` (status final, `code` from vkp-alert-code-v090 1.x,
  severity from the event's severity, identifiedDateTime = occurred time, detail = vendor text).
- supervision: an `Encounter` (status finished, class v3-ActCode VR, `type` from
  vkp-encounter-mode-v090, `reasonCode` from vkp-encounter-reason-v090) and one `Observation`
  per supervision observation (`code` from vkp-alert-code-v090 4.x), referring to the Encounter.
- home_measurement: an `Observation` (status final, LOINC code, UCUM valueQuantity).
- alarm_step: not a note of its own (`NotRenderable`); the steps of an alarm segment form its
  handling log (`handling_log`: a Composition with the timeline, a DetectedIssue and a
  Location), which `render_entry_note` makes of a stored log entry.

Where the patient, the device and the vendor organisation go (only elements whose R4 reference
targets allow them; every reference is logical, by identifier):

| resource           | patient | device (`Device`)       | vendor (`Organization`)          |
|--------------------|---------|-------------------------|----------------------------------|
| MedicationDispense | subject | performer[0].actor      | performer[1].actor               |
| DetectedIssue      | patient | author                  | none: R4 allows no Organization  |
| Encounter          | subject | none: R4 has no element | serviceProvider                  |
| Observation        | subject | device                  | performer                        |

The vendor system the event came through is `meta.source` (`urn:vkp:<vendor system>`) of every
resource.

Identifiers:
- The note's resources: `NOTE_IDENTIFIER_SYSTEM` with value `<entry id>/<n>` (n = 1, 2, ... in
  entry order). Each entry is a conditional create on that identifier (`ifNoneExist`), so a
  retried delivery creates nothing twice; its fullUrl is `urn:uuid:` + uuid5(NOTE_NAMESPACE,
  `<entry id>/<n>`): the same event and context give the same Bundle.
- Devices: `urn:vkp:device:<vendor organisation number>` with the vendor's device id: device ids
  are unique only within a vendor.
- Patients: FNR, D-number or FH-number system (../shared/domain/README.md) by the id's stated
  type, else by its digits.

The code systems' displays come from `codesystems.json` in this package, a verbatim copy of the
VKP code systems 0.9.0 (../shared/domain/vkp-codesystems.json).

Pure: no I/O but reading that data file, no gRPC, no clock. The parts: `note` (the context, the
note's identifiers, NotRenderable), `codes` (the code systems), `words` (times and words as a
nurse writes them), `text` (the Norwegian text), `references` (patient, device, vendor) and
`resources` (the resources of each kind and the Bundle).
"""

from __future__ import annotations

from vkp_journaling.render.handling_log import render_entry_note, render_handling_log
from vkp_journaling.render.note import (
    NOTE_IDENTIFIER_SYSTEM,
    NOTE_NAMESPACE,
    NoteContext,
    NotRenderable,
    note_key,
)
from vkp_journaling.render.resources import render_note
from vkp_journaling.render.text import narrative

__all__ = [
    "NOTE_IDENTIFIER_SYSTEM",
    "NOTE_NAMESPACE",
    "NotRenderable",
    "NoteContext",
    "narrative",
    "note_key",
    "render_entry_note",
    "render_handling_log",
    "render_note",
]
