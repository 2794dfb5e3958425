"""SECRET_KEY rotation end to end, as the README says to do it (issue 9 item 6), on SQLite
and PostgreSQL: old SECRET_KEY -> new SECRET_KEY with OLD_SECRET_KEYS -> the command
`python -m integration.rotate` -> new SECRET_KEY alone. Users keep their subscriptions,
secrets and watches throughout, whether or not they called during the rotation."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

from sqlalchemy import select

from integration.models import Subscription, Watch, utcnow
from integration.security import KeyVault, key_hash
from integration.worker import Worker
from tests.conftest import API_KEY, AUTH, ROOT, make_test_app, unique_handle

OLD = "old-secret-0123456789abcdef0123456789"
NEW = "new-secret-fedcba9876543210fedcba9876"
QUIET_KEY = "sk_quiet_user_key_0123456789"  # a user who does not call during the rotation
QUIET = {"Authorization": f"Bearer {QUIET_KEY}"}
TARGET = "http://127.0.0.1:9/hook"  # never contacted: the worker only refreshes here


def closing(app):
    svc = app.extensions["tiktok_following"]
    svc.client.close()
    svc.engine.dispose()


def trigger(client, handle, headers):
    return client.post("/v1/make/triggers/new-following", json={"handle": handle}, headers=headers)


def subscribe(client, handle, headers):
    return client.post("/v1/zapier/hooks", json={"handle": handle, "targetUrl": TARGET}, headers=headers)


def test_rotation_keeps_every_user_working(database_url, fake_upstream):
    fake_upstream.add_key(QUIET_KEY)
    active_sub, active_poll, quiet_sub, quiet_poll = (unique_handle(p) for p in ("as", "ap", "qs", "qp"))
    for handle in (active_sub, active_poll, quiet_sub, quiet_poll):
        fake_upstream.seed(handle, 3)

    # 1. Before: both users subscribe and poll under the old secret.
    before = make_test_app(database_url, fake_upstream.url, secret_key=OLD)
    c = before.test_client()
    mine = subscribe(c, active_sub, AUTH).get_json()
    quiet = subscribe(c, quiet_sub, QUIET).get_json()
    assert trigger(c, active_poll, AUTH).status_code == 200 and trigger(c, quiet_poll, QUIET).status_code == 200
    closing(before)

    # 2. Rotating: new SECRET_KEY, old one in OLD_SECRET_KEYS. The active user calls.
    during = make_test_app(database_url, fake_upstream.url, secret_key=NEW, old_secret_keys=(OLD,))
    c = during.test_client()
    assert [s["id"] for s in c.get("/v1/zapier/hooks", headers=AUTH).get_json()] == [mine["id"]]
    assert c.get(f"/v1/zapier/hooks/{mine['id']}", headers=AUTH).status_code == 200
    fake_upstream.follow(active_poll)
    spent = fake_upstream.credits_spent(API_KEY)
    items = trigger(c, active_poll, AUTH).get_json()
    assert [i["sequence"] for i in items] == [1]  # the same watch continues: no second baseline
    assert fake_upstream.credits_spent(API_KEY) == spent + 1
    closing(during)

    # 3. The command moves everything it can at once.
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": NEW, "OLD_SECRET_KEYS": OLD}
    done = subprocess.run([sys.executable, "-m", "integration.rotate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["watches_rehashed"] == 2  # the quiet user's two watches, found through the stored key
    assert report["secrets_reencrypted"] == 2 and report["unreadable"] == 0

    # 4. After: OLD_SECRET_KEYS dropped. Nothing needs the old secret any more.
    after = make_test_app(database_url, fake_upstream.url, secret_key=NEW)
    svc = after.extensions["tiktok_following"]
    new_only = KeyVault(NEW)
    with svc.sessions() as session:
        assert set(session.scalars(select(Watch.owner_hash))) == {key_hash(NEW, API_KEY), key_hash(NEW, QUIET_KEY)}
        for token in session.scalars(select(Watch.api_key_enc).where(Watch.api_key_enc.is_not(None))):
            assert new_only.decrypt(token) is not None
        for token in session.scalars(select(Subscription.secret_enc)):
            assert new_only.decrypt(token) is not None
    c = after.test_client()
    assert [s["id"] for s in c.get("/v1/zapier/hooks", headers=QUIET).get_json()] == [quiet["id"]]
    again = subscribe(c, quiet_sub, QUIET)
    assert again.status_code == 200 and again.get_json()["secret"] == quiet["secret"]
    fake_upstream.follow(quiet_poll)
    assert [i["sequence"] for i in trigger(c, quiet_poll, QUIET).get_json()] == [1]
    # The worker still refreshes with the stored key.
    spent = fake_upstream.credits_spent(QUIET_KEY)
    later = utcnow() + dt.timedelta(hours=1)
    svc.clock = lambda: later
    worker = Worker(svc)
    try:
        assert worker.refresh_due() == 2
    finally:
        worker.close()
    assert worker.stats["refreshed"] == 2 and fake_upstream.credits_spent(QUIET_KEY) == spent + 1
    assert c.delete(f"/v1/zapier/hooks/{mine['id']}", headers=AUTH).status_code == 204
    assert c.get("/v1/zapier/hooks", headers=AUTH).get_json() == []
    closing(after)


def test_the_command_refuses_to_run_without_old_keys(database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": NEW, "OLD_SECRET_KEYS": ""}
    done = subprocess.run([sys.executable, "-m", "integration.rotate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "OLD_SECRET_KEYS" in done.stderr
