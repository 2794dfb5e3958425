"""The Zapier app's own checks (manifests/zapier/test/*.test.js), run with Node's
built-in test runner against a live service backed by the fake upstream:

- schema: the definition validates with zapier-platform-schema 19.1.0;
- constraints: functional and offline publishing checks;
- integration: zapier-platform-core's app tester runs every operation against
  `live_service`, including the error mapping.

Needs Node >= 18; installs manifests/zapier/node_modules with `npm ci` when it is
missing (skips with a message when Node or npm is unavailable; CI has both).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import API_KEY, start_worker, stop_worker

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "manifests" / "zapier"
TEST_DIR = APP_DIR / "test"


def _tail(text: str, limit: int = 20000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if not node:
        pytest.skip("Node.js is not installed: the Zapier app checks need `node` (>= 18)")
    major = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if int(major) < 18:
        pytest.skip(f"Node.js {major} is too old for `node --test`; need >= 18")
    if not (APP_DIR / "node_modules" / "zapier-platform-core").is_dir():
        npm = shutil.which("npm")
        if not npm:
            pytest.skip("manifests/zapier/node_modules is missing and npm is not installed "
                        "(run `npm ci --prefix manifests/zapier`)")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=APP_DIR,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


@pytest.fixture
def worker(live_service, fake_upstream, tmp_path):
    """The service's worker on the live service's database, so a real webhook delivery
    reaches the Node test's target."""
    process = start_worker(live_service.database_url, fake_upstream.url, tmp_path / "worker.log",
                           POLL_INTERVAL_SECONDS=1, REFRESH_WINDOW_SECONDS=0)
    yield process.log_path
    stop_worker(process)


def test_zapier_app_checks(node, live_service, fake_upstream, worker):
    files = sorted(str(p.relative_to(ROOT)) for p in TEST_DIR.glob("*.test.js"))
    assert {Path(f).name for f in files} >= {"schema.test.js", "constraints.test.js", "integration.test.js"}
    env = {
        **os.environ,
        "API_BASE_URL": live_service.url,
        "FAKE_UPSTREAM_URL": fake_upstream.url,
        "TEST_API_KEY": API_KEY,
        "NO_COLOR": "1",
        "NODE_ENV": "test",
    }
    if worker is not None:
        env["EXPECT_WEBHOOK_DELIVERY"] = "1"  # integration.test.js then requires a real delivery
    done = subprocess.run([node, "--test", "--test-reporter=tap", *files], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    output = _tail(done.stdout + "\n" + done.stderr)
    if worker is not None and done.returncode != 0:
        output += "\n--- worker log ---\n" + _tail(worker.read_text(errors="replace"), 5000)
    assert done.returncode == 0, f"node --test failed (exit {done.returncode}):\n{output}"
    # The integration file must really have run, not been skipped.
    assert "# SKIP integration" not in done.stdout, output
    assert "# fail 0" in done.stdout, output
