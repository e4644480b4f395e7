"""Dead letters: a note given up on is one alert — one error line in the log and one count of
`vkp.journaling.dead_letters` (by municipality) — however it died: a pushed delivery that failed
for good or too often, an EPJ that pulls refusing it, a note that makes no note. The store makes
the entry DEAD; whoever committed that tells `DeadLetters`, once per entry made dead."""

from __future__ import annotations

from opentelemetry import metrics

from vkp_lib.logging import get_logger

log = get_logger("vkp.journaling.dead_letters")
#: The counter's name: each count is one alert.
COUNTER = "vkp.journaling.dead_letters"


class DeadLetters:
    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter("vkp.journaling", meter_provider=meter_provider)
        self._counter = meter.create_counter(
            COUNTER, description="Notes given up on: each is one alert."
        )

    def dead(self, entry_id: str, municipality: str, reason: str, **details: int | str) -> None:
        """An entry was made a dead letter (committed): logged and counted, once. `reason` is a
        fixed code (never an EPJ's words, which may name the patient)."""
        self._counter.add(1, {"municipality": municipality})
        log.error(
            "journal note dead",
            entry_id=entry_id,
            municipality=municipality,
            reason=reason,
            **details,
        )
