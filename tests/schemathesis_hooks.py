"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

One rule of the service cannot be written in OpenAPI 3.0, which has no constraint across
fields: `minFollowers` must not be larger than `maxFollowers` (400 naming minFollowers,
tests/test_filters.py). Nor can "exactly one of `handle` and `handles`, no handle twice once
normalized" (tests/test_watchlists.py), nor those of "followed by many" (tests/test_crowds.py):
`minHandles` at most the number of handles, and on a subscription `minHandles`/`withinDays`
only with `event: followed_by_many`, which needs `handles` (2 or more). Bodies breaking only
those rules are not generated as valid data."""
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
        if not _crowd_rules_hold(body):
            return False
    return True


def _crowd_rules_hold(body: dict) -> bool:
    handles, wanted = body.get("handles"), body.get("minHandles")
    if isinstance(handles, list) and type(wanted) is int and wanted > len(handles):
        return False
    if "targetUrl" in body:  # a subscription
        if body.get("event") == "followed_by_many":
            return isinstance(handles, list) and len(handles) >= 2
        return "minHandles" not in body and "withinDays" not in body
    return True
