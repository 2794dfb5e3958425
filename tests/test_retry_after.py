"""The one Retry-After reading, used for the upstream's answers and the receivers'."""
import pytest
from hypothesis import example, given, settings, strategies as st

from integration import delivery, upstream
from integration.retry_after import MAX_RETRY_AFTER, parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize("value,seconds", [
    ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0),
    ("Tue, 14 Nov 2023 22:13:20 GMT", 0.0),           # NOW itself
    ("Tue, 14 Nov 2023 22:15:20 GMT", 120.0),
    ("Tue, 14 Nov 2023 22:15:20 -0000", 120.0),       # no claimed zone: UTC
    ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),           # in the past: now
    ("999999999", MAX_RETRY_AFTER),                   # absurd: capped at a day
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
])
def test_numbers_and_http_dates(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "inf", "nan", "1e400", "0x10", "١٢", "12 s",
                                   "Mon, 99 Foo 2023", "Tue, 14 Nov 2023 25:99:99 GMT"])
def test_anything_else_is_ignored(value):
    assert parse_retry_after(value, now=NOW) is None


@settings(max_examples=300)  # derandomized by the `ci` profile (conftest.py), random under `make fuzz`
@given(st.text(max_size=60))
@example("Tue, 14 Nov 99999 22:13:40 GMT")
@example("-99999999999999999999")
def test_never_raises_and_stays_within_a_day(value):
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER


def test_one_copy_serves_the_upstream_client_and_the_sender():
    assert upstream.parse_retry_after is parse_retry_after
    assert delivery.parse_retry_after is parse_retry_after
