"""`/_fake/...`: the Python API over HTTP, for other processes (e.g. Node tests)."""
from __future__ import annotations

import json
from dataclasses import asdict
from urllib.parse import unquote

from .wire import Reply, error_reply, json_reply

OK = {"ok": True}


def dispatch(fake, method: str, path: str, raw: bytes) -> Reply:
    """`path` is what follows `/_fake/`, e.g. `handles/someone/seed`."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return error_reply(400, "Invalid JSON in request body")
    if not isinstance(body, dict):
        return error_reply(400, "The body must be a JSON object.")
    parts = [unquote(part) for part in path.strip("/").split("/")]
    try:
        return _route(fake, method, parts, body)
    except (KeyError, TypeError, ValueError) as exc:
        return error_reply(400, f"Bad control request: {exc!r}")


def _route(fake, method: str, parts: list[str], body: dict) -> Reply:
    match method, parts:
        case "POST", ["reset"]:
            fake.reset()
            return json_reply(200, OK)
        case "POST", ["keys"]:
            fake.add_key(body["key"], body.get("credits"))
            return json_reply(200, OK)
        case "POST", ["handles", handle, "seed"]:
            return json_reply(200, fake.seed(handle, int(body.get("n", 0)), body.get("startTime")))
        case "POST", ["handles", handle, "follow"]:
            return json_reply(200, fake.follow(handle, body.get("account"), body.get("at")))
        case "POST", ["handles", handle, "unfollow"]:
            return json_reply(200, {"removed": fake.unfollow(handle, str(body["id"]))})
        case "GET", ["handles", handle, "following"]:
            return json_reply(200, [{"time": t, "entry": e} for t, e in fake.following(handle)])
        case "POST", ["faults"]:
            fake.add_fault(
                body.get("times", 1),
                status=body.get("status"),
                malformed=body.get("malformed"),
                hang=body.get("hang", 0.0),
                body=body.get("body"),
                headers=body.get("headers"),
            )
            return json_reply(200, OK)
        case "POST", ["config"]:  # not in the Python API as a method: these are attributes
            if "delay" in body:
                fake.delay = float(body["delay"])
            if "rateLimit" in body:
                fake.rate_limit = tuple(body["rateLimit"]) if body["rateLimit"] else None
            if "defaultCount" in body:
                fake.default_count = int(body["defaultCount"])
            if "maxCount" in body:
                fake.max_count = int(body["maxCount"])
            return json_reply(200, OK)
        case "POST", ["deviations"]:  # {"names": [...]}: exactly these; [] restores the documented behaviour
            fake.set_deviations(*body.get("names", []))
            return json_reply(200, {"deviations": fake.deviations})
        case "GET", ["deviations"]:
            return json_reply(200, {"deviations": fake.deviations})
        case "GET", ["requests"]:
            return json_reply(200, [asdict(r) for r in fake.requests])
        case "GET", ["credits"]:
            return json_reply(200, {"total": fake.credits_spent(), "byKey": fake.credits_by_key()})
    return error_reply(404, f"No control route {method} /_fake/{'/'.join(parts)}.")
