"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

One rule of the service cannot be written in OpenAPI 3.0, which has no constraint across
fields: `minFollowers` must not be larger than `maxFollowers` (400 naming minFollowers,
tests/test_filters.py). Bodies breaking only that rule are not generated as valid data."""
from __future__ import annotations

import schemathesis


@schemathesis.hook
def filter_body(ctx, body):
    if isinstance(body, dict):
        low, high = body.get("minFollowers"), body.get("maxFollowers")
        if type(low) is int and type(high) is int and low > high:
            return False
    return True
