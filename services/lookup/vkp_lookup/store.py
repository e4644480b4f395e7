"""Where lookup reads: lookup owns no system of record. It reads the municipality's EPJ through
the shared `fhir` adapter, behind a cache (Redis across replicas), and that is this interface:
the only place that knows how. Step 12 brings the EPJ reader and the cache behind it."""

from __future__ import annotations

from typing import Protocol

from vkp_lookup.domain.need import Episode


class PatientRecords(Protocol):
    """The EPJ data lookup needs, by the EPJ's logical patient id."""

    async def episodes(self, municipality: str, patient_id: str) -> list[Episode]:
        """The patient's EpisodeOfCare resources."""
        ...
