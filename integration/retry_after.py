"""The one reading of a `Retry-After` header, for the upstream's answers and the receivers'."""
from __future__ import annotations

import datetime as dt
import math
import re
import time
from email.utils import parsedate_to_datetime

# Nobody may park us longer than a day with one answer (a receiver's delivery, a watch's poll).
MAX_RETRY_AFTER = 24 * 3600.0
_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,6})?")  # delta-seconds (tolerating a fraction or a sign)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, from delta-seconds ("120", "1.5") or an HTTP date; None when absent
    or neither (never raises: the header comes from a server we do not control).
    Negative or past values mean "now" (0.0); absurd values are capped at MAX_RETRY_AFTER."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if _NUMBER.fullmatch(value):
        seconds = float(value)
    else:
        seconds = _seconds_until_date(value, time.time() if now is None else now)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _seconds_until_date(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the date is UTC without a claimed zone
        when = when.replace(tzinfo=dt.timezone.utc)
    try:
        return when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
