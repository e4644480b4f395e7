"""The leak guard: a test fails when a synthetic patient's id, name or address is logged or
exported in a span, whatever the encoding, and passes when nothing leaks."""

from __future__ import annotations

import base64
import hashlib

import pytest

from vkp_lib.testing.data import TEST_PEOPLE
from vkp_lib.testing.sensitive import SensitiveData

PERSON = TEST_PEOPLE[0]


def _run_inner(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(
        test_inner=f"""
import logging
import structlog
from opentelemetry import trace

log = logging.getLogger("vkp.inner")

def test_inner():
{body}
"""
    )
    return pytester.runpytest_subprocess("-p", "vkp_lib.testing.plugin", "-p", "no:cacheprovider")


def test_guard_fails_a_test_that_logs_a_synthetic_national_id(pytester: pytest.Pytester) -> None:
    result = _run_inner(pytester, f"    log.info('looked up patient %s', '{PERSON.national_id}')")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*health data left the process*", "*national id (plain) in a log record*"]
    )


def test_guard_fails_a_test_whose_structured_log_carries_a_name(pytester: pytest.Pytester) -> None:
    result = _run_inner(
        pytester, f"    structlog.get_logger('vkp.inner').info('lookup', who='{PERSON.name}')"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*patient name in a log record*"])


def test_guard_fails_a_test_that_puts_an_address_on_a_span(pytester: pytest.Pytester) -> None:
    body = (
        "    with trace.get_tracer('t').start_as_current_span('lookup') as span:\n"
        f"        span.set_attribute('vkp.address', '{PERSON.address}')"
    )
    result = _run_inner(pytester, body)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*address in span 'lookup'*"])


def test_guard_passes_a_test_that_logs_only_a_pseudonym(pytester: pytest.Pytester) -> None:
    result = _run_inner(pytester, "    log.info('looked up patient %s', 'p-7f3a9c')")
    result.assert_outcomes(passed=1)


def test_attribute_marked_sensitive_is_not_exported_so_the_guard_passes(
    pytester: pytest.Pytester,
) -> None:
    body = (
        "    with trace.get_tracer('t').start_as_current_span('lookup') as span:\n"
        f"        span.set_attribute('vkp.sensitive.patient', '{PERSON.national_id}')"
    )
    result = _run_inner(pytester, body)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("encoded", "label"),
    [
        (PERSON.national_id, "national id (plain)"),
        (f"{PERSON.national_id[:6]} {PERSON.national_id[6:]}", "national id (spaced)"),
        (
            base64.b64encode(f'{{"id":"{PERSON.national_id}"}}'.encode()).decode(),
            "national id (base64)",
        ),
        (base64.urlsafe_b64encode(PERSON.national_id.encode()).decode(), "national id (base64)"),
        (PERSON.national_id.encode().hex().upper(), "national id (hex)"),
        (hashlib.sha256(PERSON.national_id.encode()).hexdigest(), "national id (sha256)"),
        ("".join(f"\\u{ord(c):04x}" for c in PERSON.national_id), "national id (plain)"),
        (PERSON.name.upper(), "patient name"),
        (f"{PERSON.family_name}, {PERSON.given_name}", "patient name"),
    ],
)
def test_each_common_encoding_is_found(encoded: str, label: str) -> None:
    leaks = SensitiveData.of([PERSON]).find(f"prefix {encoded} suffix", "text")
    assert label in {leak.what for leak in leaks}


def test_other_digits_are_not_taken_for_an_id() -> None:
    assert SensitiveData.of([PERSON]).find("request 12345678901 took 3 ms", "text") == []
