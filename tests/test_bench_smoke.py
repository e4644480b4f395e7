"""The benchmark harness cannot rot: its smoke run (`bench/run.py --smoke`, every row with tiny
sizes) gives every row of issue 15's table a figure, on SQLite and on PostgreSQL, and writes
them to the JSON file. It asserts no timing: a benchmark reports, a test never judges a figure.
The wait for notes (`bench/notes.py`) is tested alone against a fake simulator.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
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
HUB_ROWS = (
    "idle",
    "idle.journaling",
    "audit",
    "ingest.unary",
    "ingest.batch",
    *(f"lookup.{kind}.{load}" for kind in ("alarm", "patient") for load in ("hit", "cold")),
    "alarm",
    "e2e",
    "backlog",
)


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
def test_the_cold_lookup_rows_fetch_each_key_once_from_the_epj(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    rows = smoke[1]["rows"]
    for db in DATABASES:
        for kind in ("alarm", "patient"):
            details = rows[f"lookup.{kind}.cold.{db}"]["details"]
            assert details["rounds"] >= 1
            assert details["keys"], (kind, db)
            assert details["epj_fetches"] == details["keys"], (kind, db)


@pytest.mark.timeout(180)
def test_the_alarm_rows_journal_every_alarm_once(smoke: tuple[str, dict[str, Any]]) -> None:
    rows = smoke[1]["rows"]
    for db in DATABASES:
        details = rows[f"alarm.{db}"]["details"]
        assert details["journaled"] == details["alarms"] > 0, db
        assert (details["lost"], details["duplicated"]) == (0, 0), db
        assert details["settle_seconds"] > 0


def test_every_row_is_printed_in_one_table(smoke: tuple[str, dict[str, Any]]) -> None:
    printed, figures = smoke
    assert printed.count("VKP benchmarks") == 1
    assert [row["name"] for row in figures["rows"].values() if row["name"] not in printed] == []


@pytest.mark.timeout(180)
def test_the_end_to_end_rows_drain_until_every_accepted_event_is_journaled(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    rows = smoke[1]["rows"]
    for db in DATABASES:
        details = rows[f"e2e.{db}"]["details"]
        assert details["drain_end"] == "all journaled" or details["lost"] > 0
        assert details["lost"] == details["accepted"] - details["journaled"]
        assert details["drain_seconds"] >= 0


@pytest.mark.timeout(180)
def test_the_backlog_waits_in_journaling_before_the_window(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    figures = smoke[1]
    for db in DATABASES:
        details = figures["rows"][f"backlog.{db}"]["details"]
        # Every entry was committed in journaling's queue (Enqueue answered) before the window.
        assert details["backlog"] == figures["run"]["sizes"]["backlog"]
        assert 0 < details["waiting_at_window_start"] <= details["backlog"]
        assert "other_journaling_p99_ms" in details
        assert "backlog_journaling_cpu_us_per_note" in details


def _notes() -> ModuleType:
    """bench/notes.py (the bench's modules import one another by name, from bench/)."""
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module("notes")


def _simulator(counts: list[int]) -> httpx.AsyncClient:
    """A simulator whose note count is the next of `counts` at each ask (then the last)."""
    answers = iter(counts)
    last = [0]

    def answer(request: httpx.Request) -> httpx.Response:
        last[0] = next(answers, last[0])
        return httpx.Response(200, json={"resourceType": "Bundle", "total": last[0]})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://epj")


async def test_a_drain_ends_once_every_note_is_in() -> None:
    notes = _notes()
    async with _simulator([1, 2, 3]) as epj:
        drained = await notes.drain(epj, 3, stall_seconds=60, max_seconds=60, poll_seconds=0.001)
    assert (drained.complete, drained.stored, drained.end) == (True, 3, "all journaled")


async def test_a_drain_ends_when_no_note_comes_for_its_stall_time() -> None:
    notes = _notes()
    async with _simulator([1, 2]) as epj:
        drained = await notes.drain(epj, 3, stall_seconds=0.05, max_seconds=60, poll_seconds=0.001)
    assert (drained.complete, drained.stored, drained.end) == (False, 2, "no progress for 0.05 s")


async def test_a_drain_goes_on_while_notes_keep_coming() -> None:
    notes = _notes()
    # A note at every ask: slow progress is still progress, however long it takes.
    async with _simulator(list(range(1, 201))) as epj:
        drained = await notes.drain(
            epj, 200, stall_seconds=0.05, max_seconds=60, poll_seconds=0.001
        )
    assert (drained.complete, drained.stored) == (True, 200)


def test_late_notes_count_with_their_own_latency_and_only_missing_ones_as_lost() -> None:
    notes = _notes()
    journaled = notes.compare(
        {"a": 100.0, "b": 100.0, "c": 100.0},
        [("a", 100.5), ("b", 160.0), ("b", 161.0), ("x", 101.0)],
    )
    assert journaled.latencies == [0.5, 60.0, math.inf]
    assert (journaled.lost, journaled.duplicated, journaled.unexpected) == (1, 1, 1)
    assert journaled.journaled == 2
