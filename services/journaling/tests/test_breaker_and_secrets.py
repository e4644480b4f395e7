"""The circuit breaker per municipality and EPJ credentials resolved by reference (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkp_journaling.breaker import Breakers
from vkp_lib.fhir import secret


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_municipality_is_paused_after_failures_in_a_row_then_probed_once() -> None:
    clock = Clock()
    breakers = Breakers(threshold=3, cooldown_seconds=1.0, clock=clock)
    for _ in range(2):
        breakers.failure("4699")
    assert breakers.paused() == []
    breakers.failure("4699")
    assert breakers.paused() == ["4699"]
    clock.now = 1.5  # the cool-down is over: one delivery may probe
    assert breakers.paused() == []
    breakers.starting("4699")
    assert breakers.paused() == ["4699"]  # no second probe while the first is out
    breakers.failure("4699")  # the probe failed: open again, for longer
    clock.now = 3.0
    assert breakers.paused() == ["4699"]
    clock.now = 3.6
    breakers.starting("4699")
    breakers.success("4699")
    assert breakers.paused() == []
    assert not breakers.is_open("4699")


def test_a_failure_elsewhere_pauses_only_its_own_municipality() -> None:
    breakers = Breakers(threshold=1, clock=Clock())
    breakers.failure("3499")
    assert breakers.paused() == ["3499"]


def test_a_secret_comes_from_the_environment_or_a_file_and_is_never_the_registrys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VKP_EPJ_SECRET_EPJ_4699", "token-from-env")
    (tmp_path / "epj-3499").write_text("token-from-file\n")
    assert secret("epj-4699", tmp_path) == "token-from-env"
    assert secret("epj-3499", tmp_path) == "token-from-file"
    assert secret("epj-5099", tmp_path) == ""
