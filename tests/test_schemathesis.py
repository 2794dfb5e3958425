"""The OpenAPI document matches the service: schemathesis generates requests from
/openapi.json against the live service (gunicorn, real HTTP) with every check it has.
Derandomized (fixed seed, deterministic generation) and bounded in examples.

One check is left out, on purpose: `ignored_auth` sends a made-up key and expects a 401.
The service cannot tell a made-up key from a real one without spending one of the user's
credits upstream, so reads scoped to a key's owner hash answer what that key owns:
nothing (an empty list, or 404 for someone else's subscription id). Every route that
reaches the upstream does answer 401 for a refused key (tests/test_errors.py).
And one rule is given to schemathesis as a hook (tests/schemathesis_hooks.py, with
tests/schemathesis.toml): OpenAPI 3.0 cannot say that `minFollowers` must not exceed
`maxFollowers`.

X-Daily-Credit-Budget is sent with a budget never reached (see the command)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import API_KEY

HOOKS = Path(__file__).resolve().parent / "schemathesis_hooks.py"  # the one rule OpenAPI 3.0 cannot state
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"       # ... and where hooks do not run


def test_schemathesis_finds_no_conformance_failure(live_service, fake_upstream, tmp_path):
    fake_upstream.seed("charlidamelio", 40)
    examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30")
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(CONFIG),
        "run", f"{live_service.url}/openapi.json",
        "--checks", "all", "--exclude-checks", "ignored_auth",
        "--header", f"Authorization: Bearer {API_KEY}",
        # A budget that is never reached: like the fake's unlimited credits, so a 402 (budget or
        # credits spent, both documented) never passes for a rejected valid request. Bad budget
        # headers are tested in tests/test_cost_controls.py.
        "--header", "X-Daily-Credit-Budget: 99999999",
        "--max-examples", examples, "--workers", "1", "--seed", "1", "--generation-deterministic",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": str(HOOKS)})
    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "No issues found" in result.stdout or "passed" in result.stdout.lower(), report


def test_health_routes_declare_no_security_and_handle_its_pattern(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert spec["paths"][path]["get"]["security"] == [], path
    trigger = spec["paths"]["/v1/{platform}/triggers/new-following"]["post"]
    body = trigger["requestBody"]["content"]["application/json"]["schema"]
    handle = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]["handle"]
    assert handle["pattern"].startswith("^") and handle["maxLength"] == 256 and handle["minLength"] == 2
