"""Zapier's official CLI validates the app: `zapier-platform validate --without-style`.

The CLI (zapier-platform-cli, pinned with Node 22 in .ci/node-tools.sh) needs Node >= 22; it is
installed into .tools/ from the npm registry, beside (not instead of) the system Node. Without it
this test is skipped with the command to run; `.ci/run` installs it and sets
REQUIRE_ZAPIER_CLI=1, which turns that skip into a failure so CI always runs the validation.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "manifests" / "zapier"
TOOLS_BIN = ROOT / ".tools" / "node_modules" / ".bin"


def _tools() -> Path:
    cli, node = TOOLS_BIN / "zapier-platform", TOOLS_BIN / "node"
    if cli.exists() and node.exists():
        return TOOLS_BIN
    reason = f"the Zapier CLI with Node 22 is not installed in {TOOLS_BIN}: run .ci/node-tools.sh"
    if os.environ.get("REQUIRE_ZAPIER_CLI") == "1":
        pytest.fail(reason + " (REQUIRE_ZAPIER_CLI=1: CI must run the official validation)")
    pytest.skip(reason)


def _app_node_modules() -> None:
    if (APP_DIR / "node_modules" / "zapier-platform-core").is_dir():
        return
    npm = shutil.which("npm")
    if not npm:
        pytest.fail("manifests/zapier/node_modules is missing and npm is not installed")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=APP_DIR, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"


def _validate(app_dir: Path, tools: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
           "DISABLE_ZAPIER_ANALYTICS": "1", "NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1",
           "API_BASE_URL": "https://tiktok-following.example.com"}
    return subprocess.run([str(tools / "zapier-platform"), "validate", "--without-style"], cwd=app_dir, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tools() -> Path:
    found = _tools()
    version = subprocess.run([str(found / "node"), "--version"], capture_output=True, text=True).stdout.strip()
    assert version.startswith("v22."), f"the CLI's Node is {version}, not 22"
    _app_node_modules()
    return found


def test_official_cli_validates_the_app(tools):
    done = _validate(APP_DIR, tools)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "structurally sound" in output, output


def test_official_cli_rejects_a_broken_app(tools, tmp_path):
    """The validation is not vacuous: a one-character label fails it."""
    copy = tmp_path / "app"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("node_modules"))
    (copy / "node_modules").symlink_to(APP_DIR / "node_modules")
    search = copy / "searches" / "list_following.js"
    text = search.read_text(encoding="utf-8")
    assert "label: 'Find Accounts a User Follows'" in text
    search.write_text(text.replace("label: 'Find Accounts a User Follows'", "label: 'X'"), encoding="utf-8")
    done = _validate(copy, tools)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "label" in (done.stdout + done.stderr)
