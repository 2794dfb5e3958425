"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

One rule of the service cannot be written in OpenAPI 3.0, which has no constraint across
fields: `minFollowers` must not be larger than `maxFollowers` (400 naming minFollowers,
tests/test_filters.py). Nor can "exactly one of `handle` and `handles`, no handle twice once
normalized" (tests/test_watchlists.py). Bodies breaking only those rules are not generated as
valid data."""
from __future__ import annotations

import schemathesis

from integration.handles import InvalidHandle, normalize_handle


@schemathesis.hook
def filter_body(ctx, body):
    if isinstance(body, dict):
        low, high = body.get("minFollowers"), body.get("maxFollowers")
        if type(low) is int and type(high) is int and low > high:
            return False
        if ("handle" in body) == ("handles" in body):
            return False
        if isinstance(body.get("handles"), list):
            try:
                names = [normalize_handle(h) for h in body["handles"] if isinstance(h, str)]
            except InvalidHandle:
                return True  # an invalid handle is rejected anyway (the pattern says so)
            if len(set(names)) != len(names):
                return False
    return True
