"""What goes over the wire: the route and the reply type shared by core, control and handler."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

API_PATH = "/api/v1/get-tiktok-user-following"
CONTROL_PREFIX = "/_fake/"
JSON_TYPE = "application/json"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, obj, headers: dict | None = None) -> Reply:
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return Reply(status, body, {"Content-Type": JSON_TYPE, **(headers or {})})


def error_reply(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message})
