"""The benchmark harness cannot rot: its smoke run (`bench/run.py --smoke`, every row with tiny
sizes) gives every row of issue 15's table a figure, on SQLite and on PostgreSQL, and writes
them to the JSON file. It asserts no timing: a benchmark reports, a test never judges a figure.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATABASES = ("sqlite", "postgresql")
#: The rows without a database: the no-op baseline, the runner, and the costs behind them.
PLAIN_ROWS = (
    "noop.bare",
    "runner",
    "runner.token",
    "runner.token.traced",
    *(f"validation.{kind}" for kind in ("medication_dispense", "supervision", "batch")),
    *(f"identity.{check}" for check in ("vendor-first", "vendor-cached", "dpop")),
)
#: Checked with h2load: skipped, with the reason, where it cannot be had.
H2LOAD_ROWS = ("h2load.bare", "h2load.runner.token")
#: The rows of the whole hub, each on both databases.
HUB_ROWS = ("idle", "idle.journaling", "audit", "ingest.unary", "ingest.batch", "e2e", "backlog")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("bench") / "figures.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(path.read_text())
    return done.stdout, figures


def _has_figure(row: dict[str, Any]) -> bool:
    value = row["value"]
    return isinstance(value, int | float) and not math.isnan(value)


@pytest.mark.timeout(180)
def test_the_smoke_run_gives_every_row_a_figure_on_both_databases(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    _, figures = smoke
    rows = figures["rows"]
    expected = [*PLAIN_ROWS, *(f"{row}.{db}" for row in HUB_ROWS for db in DATABASES)]
    assert [key for key in expected if key not in rows] == []
    assert [key for key in expected if not _has_figure(rows[key])] == []
    assert figures["run"]["smoke"] is True


@pytest.mark.timeout(180)
def test_the_h2load_rows_have_a_figure_or_say_why_not(smoke: tuple[str, dict[str, Any]]) -> None:
    rows = smoke[1]["rows"]
    for key in H2LOAD_ROWS:
        assert _has_figure(rows[key]) or rows[key]["skipped"], key


@pytest.mark.timeout(180)
def test_the_end_to_end_rows_count_lost_and_duplicated_notes(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    rows = smoke[1]["rows"]
    for db in DATABASES:
        details = rows[f"e2e.{db}"]["details"]
        assert details["accepted"] > 0
        assert isinstance(details["lost"], int)
        assert isinstance(details["duplicated"], int)
        assert rows[f"backlog.{db}"]["details"]["other_accepted"] > 0


@pytest.mark.timeout(180)
def test_every_row_is_printed_in_one_table(smoke: tuple[str, dict[str, Any]]) -> None:
    printed, figures = smoke
    assert printed.count("VKP benchmarks") == 1
    assert [row["name"] for row in figures["rows"].values() if row["name"] not in printed] == []
