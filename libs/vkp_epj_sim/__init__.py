"""The EPJ simulator: a FHIR R4 server that plays the sandbox municipalities' patient records.

One process serves every sandbox municipality under `/<kommunenummer>/fhir`, seeded with
synthetic patients; it stores the notes the hub sends (conditional creates, atomically),
answers the lookup's searches, injects faults on command and lists the notes on a page.
Start it with `vkp epj-sim` (or `python -m vkp_epj_sim`).

| module | what it is for |
|---|---|
| `seed` | the synthetic patients, deterministic from a seed (`sandbox_patients`) |
| `codes` | code systems, identifier systems and extension urls |
| `records` | the seed patients as FHIR resources |
| `search` | search parameters, the index of a resource, a search read into a query |
| `transaction` | a transaction Bundle read into (conditional) creates |
| `store` | the SQLite file |
| `fhir_api` | the FHIR interactions over HTTP |
| `capability` | the CapabilityStatement |
| `faults` | the faults per municipality |
| `control` | the control endpoint |
| `page` | the page of received notes |
| `middleware` | span, log line and errors of every request |
| `listeners` | sockets that can be closed and reopened |
| `server` | the process: listeners, seeding, start and stop |

Importing it starts nothing.
"""

from vkp_epj_sim.seed import (
    DEFAULT_SEED,
    SeedPatient,
    sandbox_patients,
    sandbox_practitioners,
    select_patients,
)

__all__ = [
    "DEFAULT_SEED",
    "SeedPatient",
    "sandbox_patients",
    "sandbox_practitioners",
    "select_patients",
]
