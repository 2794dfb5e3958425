"""Subscriptions are idempotent and bounded per key, also under concurrent subscribes
(issue 9 item 2), on SQLite and PostgreSQL. The last subscription going forgets the key."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text

from integration.config import ROOT
from integration.db import make_engine
from integration.migrate import upgrade
from integration.models import Subscription, Watch
from tests.conftest import AUTH, make_test_app, unique_handle

TARGET = "http://127.0.0.1:9/catch/1"  # never contacted: no worker delivers in these tests


def subscribe(client, handle, target=TARGET, platform="zapier"):
    return client.post(f"/v1/{platform}/hooks", json={"handle": handle, "targetUrl": target}, headers=AUTH)


def count_subscriptions(app) -> int:
    svc = app.extensions["tiktok_following"]
    with svc.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscription))


@pytest.fixture
def small_app(database_url, fake_upstream):
    application = make_test_app(database_url, fake_upstream.url, max_subscriptions_per_key=3)
    yield application
    svc = application.extensions["tiktok_following"]
    svc.client.close()
    svc.engine.dispose()


def test_subscribing_twice_returns_the_existing_subscription_and_its_secret(client, app, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    first = subscribe(client, handle)
    assert first.status_code == 201
    again = subscribe(client, handle, platform="make")  # Make re-subscribing the same target
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["secret"] == first.get_json()["secret"]  # only this key's owner can ask
    assert count_subscriptions(app) == 1
    other = subscribe(client, handle, target=TARGET + "/other")
    assert other.status_code == 201 and other.get_json()["id"] != first.get_json()["id"]
    assert len(client.get("/v1/zapier/hooks", headers=AUTH).get_json()) == 2


def test_concurrent_identical_subscribes_make_one_subscription(app, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: subscribe(app.test_client(), handle), range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.get_json()["id"] for a in answers}) == 1
    assert count_subscriptions(app) == 1


def test_a_key_has_at_most_max_subscriptions(small_app, fake_upstream):
    client = small_app.test_client()
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    for i in range(3):
        assert subscribe(client, handle, f"{TARGET}/{i}").status_code == 201
    refused = subscribe(client, handle, f"{TARGET}/3")
    assert refused.status_code == 409
    body = refused.get_json()
    assert body["code"] == "too_many_subscriptions" and "3 webhook subscriptions" in body["error"]
    assert count_subscriptions(small_app) == 3
    assert subscribe(client, handle, f"{TARGET}/0").status_code == 200  # an existing one is still returned
    sub_id = client.get("/v1/zapier/hooks", headers=AUTH).get_json()[0]["id"]
    assert client.delete(f"/v1/zapier/hooks/{sub_id}", headers=AUTH).status_code == 204
    assert subscribe(client, handle, f"{TARGET}/3").status_code == 201


def test_concurrent_subscribes_at_the_limit_never_pass_it(small_app, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    client = small_app.test_client()
    assert subscribe(client, handle, f"{TARGET}/first").status_code == 201
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: subscribe(small_app.test_client(), handle, f"{TARGET}/{i}"), range(8)))
    assert sorted(a.status_code for a in answers) == [201] * 2 + [409] * 6
    assert count_subscriptions(small_app) == 3


def test_the_last_subscription_going_forgets_the_stored_key(client, app, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    ids = [subscribe(client, handle, f"{TARGET}/{i}").get_json()["id"] for i in range(2)]
    svc = app.extensions["tiktok_following"]

    def stored_key():
        with svc.sessions() as session:
            return session.scalar(select(Watch.api_key_enc))

    client.delete(f"/v1/zapier/hooks/{ids[0]}", headers=AUTH)
    assert stored_key() is not None
    client.delete(f"/v1/zapier/hooks/{ids[1]}", headers=AUTH)
    assert stored_key() is None


def test_migration_keeps_the_oldest_of_identical_subscriptions(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "0002_detection")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO watches (id, owner_hash, handle, created_at, top_ids, baseline, last_sequence,"
                          " status, truncations) VALUES (1, 'o', 'h', '2026-01-01', '[]', '[]', 0, 'active', 0)"))
        for sub_id, created in (("sub_a", "2026-01-01"), ("sub_b", "2026-01-02"), ("sub_c", "2026-01-03")):
            url_ = TARGET + ("/c" if sub_id == "sub_c" else "")
            conn.execute(text("INSERT INTO subscriptions (id, watch_id, owner_hash, platform, target_url, secret_enc,"
                              " created_at, active) VALUES (:id, 1, 'o', 'zapier', :u, 's', :c, 1)"),
                         {"id": sub_id, "u": url_, "c": created})
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, event, length(target_hash) FROM subscriptions ORDER BY id")).all()
        last_used = conn.execute(text("SELECT last_used_at FROM watches")).scalar()
    engine.dispose()
    assert rows == [("sub_a", "new_following", 64), ("sub_c", "new_following", 64)]
    assert last_used is not None
