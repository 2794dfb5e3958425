"""`python -m integration.probe`, run as a real subprocess against the fake upstream, with
the documented behaviour and with each of the fake's deviations switched on."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fakeupstream.deviations import NAMES
from integration.config import Settings
from tests.conftest import ROOT

KEY = "sk-probe-SECRET-4821"  # must never appear in anything the probe prints
HANDLE = "probed"

# deviation -> the verdict that must say "differs" (and the setting it must print, if any)
EXPECTED = {
    "inclusive_min_time": ("min_time_exclusive", None),
    "millisecond_cursors": ("cursor_unit", None),
    "zero_cursors": ("cursor_unit", None),
    "missing_cursors": ("cursor_unit", None),
    "constant_cursors": ("cursors_advance", None),
    "unordered_cursors": ("cursors_advance", None),
    "count_ignored_long": ("count_honoured", None),
    "count_ignored_short": ("count_honoured", "PAGE_SIZE=7"),
    "count_max_20": ("count_honoured", "PAGE_SIZE=20"),
    "has_more_always": ("has_more", None),
    "has_more_wrong": ("has_more", None),
    "empty_page_has_more": ("empty_page", None),
    "duplicates": ("no_duplicates", None),
    "numeric_ids": ("string_ids", None),
    "missing_optional": ("fields_present", None),
    "depth_cap_100": ("full_depth", None),
    "unordered": ("newest_first", None),
    "hidden_list": ("list_readable", None),
}


@pytest.fixture
def fake(fake_upstream):
    fake_upstream.add_key(KEY)
    fake_upstream.seed(HANDLE, 250)
    return fake_upstream


def probe(fake, *args, key=KEY, stdin="", base_url=None):
    env = {**os.environ, "DUMPLING_BASE_URL": base_url or fake.url, "DUMPLING_API_KEY": key or ""}
    run = subprocess.run([sys.executable, "-m", "integration.probe", *args], cwd=ROOT, env=env, input=stdin,
                         capture_output=True, text=True, timeout=60)
    assert KEY not in run.stdout + run.stderr
    return run


def verdicts(run) -> dict[str, dict]:
    return {v["assumption"]: v for v in json.loads(run.stdout)["verdicts"]}


def api_requests(fake):
    return [r for r in fake.requests if r.key == KEY]


def test_every_deviation_has_an_expected_verdict():
    assert set(EXPECTED) == set(NAMES)


def test_documented_upstream_every_verdict_holds(fake):
    run = probe(fake, "--handle", "@Probed", "--yes", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert {name: v["status"] for name, v in verdicts(run).items()} == dict.fromkeys(verdicts(run), "holds")
    assert len(verdicts(run)) == 12 and out["settings"] == []
    assert out["creditsSpent"] == fake.credits_spent(KEY) == len(api_requests(fake)) <= 10
    assert [r.body.get("count") for r in api_requests(fake)][:3] == [1, 30, 100]
    assert all(r.body["handle"] == HANDLE for r in api_requests(fake))
    assert out["rateLimitHeaders"]["X-RateLimit-Limit"] == "1000"
    assert len(out["requests"]) == out["creditsSpent"] and all(r["seconds"] >= 0 for r in out["requests"])
    assert out["fieldPresence"]["avatarThumb"] == {"present": 281, "null": 0, "absent": 0}


@pytest.mark.parametrize("deviation", sorted(EXPECTED))
def test_each_deviation_is_reported(fake, deviation):
    fake.set_deviations(deviation)
    run = probe(fake, "--handle", HANDLE, "--yes", "--json")
    assert run.returncode == 0, run.stderr
    assumption, setting = EXPECTED[deviation]
    verdict = verdicts(run)[assumption]
    assert verdict["status"] == "differs", verdict
    assert verdict["setting"] == setting
    assert json.loads(run.stdout)["settings"] == ([setting] if setting else [])
    assert fake.credits_spent(KEY) == json.loads(run.stdout)["creditsSpent"] <= 10


def test_the_text_report_ends_with_verdicts_and_settings(fake):
    fake.set_deviations("count_max_20", "inclusive_min_time")
    run = probe(fake, "--handle", HANDLE, "--yes")
    assert run.returncode == 0, run.stderr
    assert "min_time_exclusive (minTime returns accounts followed strictly before it): differs: " in run.stdout
    assert "the detection de-duplicates the repeated boundary account and re-asks boundaries" in run.stdout
    assert "count_honoured (count sets the page size): differs: count is capped at 20" in run.stdout
    assert "string_ids (user.id is a string): holds (" in run.stdout
    assert run.stdout.rstrip().endswith("Settings to apply: PAGE_SIZE=20")
    assert "Rate-limit headers (last answer): X-RateLimit-Limit: 1000" in run.stdout


@pytest.mark.parametrize("answer", ["n\n", "\n", "", "yes please\n"])
def test_declining_the_prompt_spends_nothing(fake, answer):
    run = probe(fake, "--handle", HANDLE, stdin=answer)
    assert run.returncode == 0
    assert "at most 10 credit(s)" in run.stderr and "[y/N]" in run.stderr and "Nothing spent." in run.stderr
    assert fake.requests == [] and run.stdout == ""


def test_accepting_the_prompt_runs_the_probe(fake):
    run = probe(fake, "--handle", HANDLE, "--max-credits", "4", stdin="y\n")
    assert run.returncode == 0 and "Spend up to 4 credit(s)? [y/N]" in run.stderr
    assert "Verdicts" in run.stdout and 0 < fake.credits_spent(KEY) <= 4


@pytest.mark.parametrize("max_credits, deviation", [(1, None), (3, None), (4, None), (5, "count_max_20"),
                                                    (2, "has_more_always")])
def test_max_credits_is_respected(fake, max_credits, deviation):
    if deviation:
        fake.set_deviations(deviation)
    run = probe(fake, "--handle", HANDLE, "--yes", "--json", "--max-credits", str(max_credits))
    assert run.returncode == 0, run.stderr
    assert len(api_requests(fake)) == max_credits == fake.credits_spent(KEY)  # each could have read more
    assert json.loads(run.stdout)["stoppedBecause"] == "budget"


def test_a_short_read_leaves_what_it_could_not_see_untested(fake):
    run = probe(fake, "--handle", HANDLE, "--yes", "--json", "--max-credits", "3")
    found = verdicts(run)
    assert found["min_time_exclusive"]["status"] == found["cursors_advance"]["status"] == "untested"
    assert found["count_honoured"]["status"] == "holds"
    assert found["full_depth"]["status"] == "holds" and "budget" in found["full_depth"]["detail"]


@pytest.mark.parametrize("args, message", [
    (["--yes"], "the following arguments are required: --handle"),
    (["--handle", HANDLE, "--max-credits", "0"], "must be at least 1"),
    (["--handle", HANDLE, "--max-credits", "many"], "invalid positive_integer value"),
    (["--handle", "not a handle!", "--yes"], "Enter a TikTok handle"),
])
def test_bad_usage_exits_2(fake, args, message):
    run = probe(fake, *args)
    assert run.returncode == 2 and message in run.stderr
    assert fake.requests == []


def test_no_key_exits_2_and_spends_nothing(fake):
    run = probe(fake, "--handle", HANDLE, "--yes", key="")
    assert run.returncode == 2
    assert "DUMPLING_API_KEY is not set" in run.stderr and fake.requests == []


def test_a_refused_key_exits_1_without_printing_it(fake):
    wrong = "sk-wrong-key-7777"
    run = probe(fake, "--handle", HANDLE, "--yes", key=wrong)
    assert run.returncode == 1 and "invalid_api_key" in run.stderr and "refused the API key" in run.stderr
    assert wrong not in run.stdout + run.stderr


@pytest.mark.parametrize("prepare, code", [
    (lambda fake: None, "handle_not_found"),  # an unknown handle: 404
    (lambda fake: fake.fail_next(503, times=1), "rate_limited"),
    (lambda fake: fake.malformed_next("html"), "upstream_malformed"),
])
def test_upstream_failure_exits_1_with_a_clear_message(fake, prepare, code):
    prepare(fake)
    handle = "nobody_here" if code == "handle_not_found" else HANDLE
    run = probe(fake, "--handle", handle, "--yes")
    assert run.returncode == 1 and f"the upstream failed ({code}" in run.stderr and run.stdout == ""


def test_a_failure_part_way_says_what_it_cost(fake):
    fake.add_fault(1, hang=0.01)  # the first request answers normally
    fake.add_fault(1, hang=0.01)
    fake.fail_next(401)
    run = probe(fake, "--handle", HANDLE, "--yes", "--json")
    assert run.returncode == 1 and "after 2 credit(s) spent" in run.stderr and run.stdout == ""
    assert fake.credits_spent(KEY) == 2


def test_an_unreachable_upstream_exits_1(fake):
    run = probe(fake, "--handle", HANDLE, "--yes", base_url="http://127.0.0.1:9")
    assert run.returncode == 1 and "upstream_unreachable" in run.stderr


def test_the_probe_key_is_read_once_and_kept_out_of_repr(monkeypatch):
    monkeypatch.setenv("DUMPLING_API_KEY", KEY)
    settings = Settings.from_env()
    assert settings.probe_api_key == KEY and KEY not in repr(settings)
