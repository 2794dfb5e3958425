"""The action's wall-clock budget (ACTION_BUDGET_SECONDS): it stops paging in time whatever the
upstream latency, and answers what it has with the cursor to continue, so nothing is lost."""
from __future__ import annotations

import pytest

from integration.errors import UpstreamFailure
from integration.following import list_following
from integration.platforms import Platform
from integration.upstream import Meter, UpstreamPage
from tests.conftest import AUTH, make_test_app


class SlowUpstream:
    """The upstream as list_following sees it, on a fake clock: page i takes latencies[i] seconds
    (or raises failures[i]). 10 accounts per page, newest first; cursors are follow times."""

    def __init__(self, latencies, failures=None, pages=100):
        self.now = 0.0
        self.latencies, self.failures, self.pages = list(latencies), failures or {}, pages
        self.budgets: list[float] = []

    def clock(self) -> float:
        return self.now

    def fetch_page(self, api_key, handle, source, *, count, min_time, meter, budget):
        i = len(self.budgets)
        self.budgets.append(budget)
        self.now += min(self.latencies[i], budget)  # the client never waits past its budget
        if i in self.failures:
            raise self.failures[i]
        top = 10_000 - 10 * i
        accounts = tuple({"id": f"{top - k}"} for k in range(10))
        return UpstreamPage(accounts, max_cursor=top, min_cursor=top - 9, has_more=i + 1 < self.pages, total=None)


def run(upstream, **kwargs):
    kwargs = {"limit": 1000, "page_cap": 100, "budget_seconds": 20.0, **kwargs}
    return list_following(upstream, "k", "alice", Platform.ZAPIER, clock=upstream.clock, meter=Meter(), **kwargs)


@pytest.mark.parametrize("latencies", [[0.5] * 100, [4.0] * 100, [1, 1, 9, 9, 9, 9], [19.5, 5], [6, 6, 6, 6, 6]])
def test_paging_stops_within_the_budget(latencies):
    upstream = SlowUpstream(latencies)
    result = run(upstream)
    assert upstream.now <= 20.0, f"the call took {upstream.now} s of a 20 s budget"
    assert result["pages"] == len(upstream.budgets) < 100
    assert result["hasMore"] is True and result["nextMinTime"] == int(result["following"][-1]["id"]) and result["count"]
    # every page was given only what was left of the budget
    assert all(b <= 20.0 for b in upstream.budgets)


def test_fast_pages_are_not_cut_short():
    upstream = SlowUpstream([0.5] * 100)
    assert run(upstream)["pages"] == 40  # 40 pages of 0.5 s fit exactly in 20 s


def test_a_later_page_that_times_out_answers_the_earlier_pages():
    upstream = SlowUpstream([1, 1, 30], failures={2: UpstreamFailure("timeout", detail="read timeout")})
    result = run(upstream)
    assert result["pages"] == 2 and result["count"] == 20
    assert result["hasMore"] is True and result["nextMinTime"] == 9981


def test_a_refused_key_or_no_credits_on_a_later_page_still_fails():
    for kind in ("unauthorized", "no_credits"):
        upstream = SlowUpstream([1, 1], failures={1: UpstreamFailure(kind)})
        with pytest.raises(UpstreamFailure):
            run(upstream)


def test_a_first_page_failure_fails():
    with pytest.raises(UpstreamFailure):
        run(SlowUpstream([30], failures={0: UpstreamFailure("timeout")}))


@pytest.fixture
def budget_app(database_url, fake_upstream):
    application = make_test_app(database_url, fake_upstream.url, action_budget_seconds=1.0, page_cap=10)
    yield application
    svc = application.extensions["tiktok_following"]
    svc.client.close()
    svc.engine.dispose()


def test_live_budget_with_a_slow_upstream_loses_nothing(budget_app, fake_upstream):
    """The fake upstream answers each request after 0.4 s: a 1 s budget reads at most 2 pages
    (not the page cap of 10), and continuing from nextMinTime yields every account once."""
    client = budget_app.test_client()
    seeded = [str(e["user"]["id"]) for e in fake_upstream.seed("alice", 300)]
    fake_upstream.delay = 0.4
    try:
        first = client.post("/v1/zapier/following", json={"handle": "alice", "limit": 1000, "count": 10},
                            headers=AUTH).get_json()
    finally:
        fake_upstream.delay = 0.0
    assert 1 <= first["pages"] <= 2, first["pages"]
    assert first["hasMore"] is True and first["nextMinTime"] is not None
    rest = client.post("/v1/zapier/following", json={"handle": "alice", "limit": 1000, "count": 10,
                                                     "minTime": first["nextMinTime"]}, headers=AUTH).get_json()
    assert rest["pages"] == 10, "without latency the same budget reads up to the page cap"
    got = [a["id"] for a in first["following"] + rest["following"]]
    assert got == seeded[:len(got)] and len(set(got)) == len(got)
