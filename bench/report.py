"""One row per figure, printed as one table and written as JSON.

Every row keeps its figure beside a baseline of the same run: a rate beside the no-op server's
requests/s, a cost per call beside the server time of one no-op RPC, journaling's delivery with
a backlog beside its delivery with an empty queue. The target (DESIGN.md §7, issue 15) is
printed beside it; a benchmark reports and never fails on a figure.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table


@dataclass
class Row:
    #: A stable key, the same in every run: "ingest.unary", "e2e", "idle", ...
    key: str
    #: What was measured, as printed.
    name: str
    #: "SQLite" or "PostgreSQL" for the rows with a database, else "".
    database: str = ""
    #: The figure and its unit ("req/s", "events/s", "notes/s", "µs", "% core", "ms p99").
    value: float | None = None
    unit: str = ""
    #: The figure against its baseline, and which baseline ("no-op", "empty queue", ...).
    ratio: float | None = None
    ratio_of: str = ""
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: The target, as written in DESIGN.md §7, and whether this run met it (None: no target).
    target: str = ""
    met: bool | None = None
    #: The load client's CPU, a share of one core, over the measurement.
    client_cpu: float | None = None
    #: Further figures of the row (lost and duplicated counts, per-service CPU, ...).
    details: dict[str, Any] = field(default_factory=dict)
    #: Why the row has no figure (h2load missing, ...).
    skipped: str = ""
    #: The figure as printed, when more than a number says it ("498 events/s, 0 lost, 0 dup").
    shown: str = ""

    @property
    def key_with_database(self) -> str:
        return f"{self.key}.{self.database.lower()}" if self.database else self.key


def _number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "never"
    if unit in ("µs", "ms") or abs(value) < 10:
        text = f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.2f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "never"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def table(rows: list[Row], title: str) -> Table:
    result = Table(title=title, title_justify="left", show_lines=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("row", "left"),
        ("db", "left"),
        ("figure", "right"),
        ("ratio", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("target", "left"),
        ("met", "center"),
        ("client CPU", "right"),
    )
    for column, justify in columns:
        result.add_column(
            column, justify=justify, no_wrap=column in ("row", "db", "figure", "ratio", "target")
        )
    for row in rows:
        if row.skipped:
            result.add_row(row.name, row.database, "skipped", row.skipped, "", "", row.target)
            continue
        ratio = "" if row.ratio is None else f"{row.ratio:.2f} x {row.ratio_of}"
        met = "" if row.met is None else ("yes" if row.met else "NO")
        cpu = "" if row.client_cpu is None else f"{row.client_cpu * 100:.0f} %"
        result.add_row(
            row.name,
            row.database,
            row.shown or _number(row.value, row.unit),
            ratio,
            _ms(row.p50_ms),
            _ms(row.p99_ms),
            row.target,
            met,
            cpu,
        )
    return result


def _plain(value: Any) -> Any:
    """JSON has no inf or nan: null for nan, a string for inf."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_json(path: Path, rows: list[Row], run: dict[str, Any]) -> None:
    document = {
        "run": run,
        "rows": {row.key_with_database: asdict(row) for row in rows},
    }
    path.write_text(json.dumps(_plain(document), indent=2, ensure_ascii=False) + "\n")


def print_table(rows: list[Row], title: str, console: Console | None = None) -> None:
    (console or Console(width=220)).print(table(rows, title))
