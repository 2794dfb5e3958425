"""Journal retention (watches._prune): events beyond the newest JOURNAL_MAX_EVENTS, or older
than JOURNAL_RETENTION_DAYS, go. A refresh whose journal grew applies the count bound; the
first refresh of each UTC day applies the age bound; the others skip the statement."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import event, func, select

from integration.models import Event, Watch
from tests.conftest import AUTH, clocked_app, unique_handle

NOON = dt.datetime(2026, 3, 2, 12, 0)


def poll(client, handle: str) -> list[dict]:
    response = client.post("/v1/api/triggers/new-following", json={"handle": handle}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def journal(svc, handle: str) -> int:
    with svc.reads() as session:
        return session.scalar(select(func.count()).select_from(Event).join(Watch, Watch.id == Event.watch_id)
                              .where(Watch.handle == handle))


def deletes(svc) -> list[str]:
    seen: list[str] = []
    event.listen(svc.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: seen.append(statement) if statement.startswith("DELETE FROM events")
                 else None)
    return seen


def test_a_refresh_that_grows_the_journal_keeps_only_the_newest_events(database_url, fake_upstream):
    with clocked_app(database_url, fake_upstream.url, NOON, journal_max_events=3) as (client, svc, now):
        handle = unique_handle()
        fake_upstream.seed(handle, 2)
        poll(client, handle)
        followed = [fake_upstream.follow(handle) for _ in range(5)]
        now[0] += dt.timedelta(minutes=1)
        items = poll(client, handle)
        # The commit writes 5, then keeps the 3 newest (no delivery pending for the others).
        assert journal(svc, handle) == 3
        assert [i["id"] for i in items] == [str(a["user"]["id"]) for a in reversed(followed)][:3]


def test_old_events_go_at_the_first_refresh_of_a_day_and_same_day_refreshes_skip_the_prune(database_url,
                                                                                           fake_upstream):
    with clocked_app(database_url, fake_upstream.url, NOON, journal_retention_days=2) as (client, svc, now):
        handle = unique_handle()
        fake_upstream.seed(handle, 2)
        poll(client, handle)
        fake_upstream.follow(handle)
        now[0] += dt.timedelta(minutes=1)
        poll(client, handle)
        assert journal(svc, handle) == 1
        seen = deletes(svc)
        now[0] += dt.timedelta(hours=1)  # the same day, nothing new: no prune statement
        poll(client, handle)
        assert seen == [] and journal(svc, handle) == 1
        now[0] += dt.timedelta(days=2)  # a new day, the event now older than 2 days
        assert poll(client, handle) == []
        assert len(seen) == 1 and journal(svc, handle) == 0
