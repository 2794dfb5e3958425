"""Bad input, tried systematically: schemathesis generates requests from /openapi.json
against the live service (gunicorn, real HTTP) and checks there is no 5xx and no answer
outside the documented schema."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import API_KEY

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
])


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(live_service, fake_upstream, tmp_path):
    fake_upstream.seed("charlidamelio", 40)
    examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "60")
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{live_service.url}/openapi.json",
        "--checks", CHECKS, "--header", f"Authorization: Bearer {API_KEY}",
        "--max-examples", examples, "--workers", "2", "--seed", "1",
        "--exclude-path", "/metrics",  # Prometheus text format, not JSON
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""})
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "No issues found" in result.stdout or "passed" in result.stdout.lower(), report
