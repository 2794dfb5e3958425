"""Auth test (free when recent), key hygiene in logs and at rest, health, metrics, OpenAPI."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from integration.observability import JsonFormatter, redact
from integration.security import KeyVault, key_hash, key_label
from tests.conftest import make_test_app

LONG_KEY = "sk_live_0123456789abcdefWXYZ"
LONG_AUTH = {"Authorization": f"Bearer {LONG_KEY}"}


@pytest.fixture
def keyed(fake_upstream):
    fake_upstream.add_key(LONG_KEY)
    fake_upstream.seed("tiktok", 3)
    return fake_upstream


def test_auth_test_checks_once_then_is_free(client, keyed):
    first = client.get("/v1/zapier/auth/test", headers=LONG_AUTH)
    assert first.status_code == 200
    assert first.get_json() == {"ok": True, "label": "key …WXYZ", "cached": False}
    assert first.headers["X-Credits-Used"] == "1"
    for _ in range(5):
        again = client.get("/v1/make/auth/test", headers=LONG_AUTH)
        assert again.get_json()["cached"] is True and again.headers["X-Credits-Used"] == "0"
    assert keyed.credits_spent(LONG_KEY) == 1


def test_auth_cache_expires(database_url, keyed):
    app = make_test_app(database_url, keyed.url, auth_cache_seconds=0)
    c = app.test_client()
    c.get("/v1/api/auth/test", headers=LONG_AUTH)
    c.get("/v1/api/auth/test", headers=LONG_AUTH)
    assert keyed.credits_spent(LONG_KEY) == 2


def test_bad_key_is_401_and_label_never_shows_more_than_4_chars(client, keyed):
    response = client.get("/v1/zapier/auth/test", headers={"Authorization": "Bearer sk_wrong_key_123456"})
    assert response.status_code == 401 and response.get_json()["code"] == "invalid_api_key"
    assert key_label("sk_live_abcdefgh1234") == "key …1234"
    short = key_label("short")
    assert short.startswith("key #") and "short" not in short and short != key_label("other")


def test_an_upstream_401_forgets_the_cached_check(client, keyed):
    assert client.get("/v1/api/auth/test", headers=LONG_AUTH).get_json()["cached"] is False
    assert client.get("/v1/api/auth/test", headers=LONG_AUTH).get_json()["cached"] is True
    keyed.fail_next(401)
    assert client.post("/v1/api/following", json={"handle": "tiktok"}, headers=LONG_AUTH).status_code == 401
    keyed.fail_next(401)
    assert client.get("/v1/api/auth/test", headers=LONG_AUTH).status_code == 401  # asked upstream again


def test_the_key_never_reaches_the_logs(client, keyed, caplog):
    formatter = JsonFormatter()
    with caplog.at_level(logging.DEBUG):
        client.get("/v1/api/auth/test", headers=LONG_AUTH)
        client.post("/v1/api/following", json={"handle": "tiktok"}, headers=LONG_AUTH)
        keyed.fail_next(500, times=5)
        client.post("/v1/api/following", json={"handle": "tiktok"}, headers=LONG_AUTH)
        logging.getLogger("test").error("oops Authorization: Bearer %s api_key=%s", LONG_KEY, LONG_KEY)
    lines = [formatter.format(r) for r in caplog.records]
    assert any('"request_id"' in line for line in lines)
    assert lines and not any(LONG_KEY in line for line in lines)
    assert not any(LONG_KEY[-12:] in line for line in lines)
    assert "[REDACTED]" in lines[-1]


def test_a_log_line_is_written_whatever_its_fields_hold():
    """orjson refuses integers past 64 bits and non-string keys: the line still comes out, as JSON."""
    import json

    formatter = JsonFormatter()
    record = logging.LogRecord("test", logging.INFO, __file__, 1, "odd fields", None, None)
    record.fields = {"big": 2**70, 3: "x", "when": object(), "apiKey": LONG_KEY}
    line = json.loads(formatter.format(record))
    assert line["big"] == 2**70 and line["3"] == "x" and line["msg"] == "odd fields"
    assert line["apiKey"] == "[REDACTED]"
    record.fields = {"nickname": "Zo\u00e9 \u212a"}  # other characters: escaped, the line stays ASCII
    text = formatter.format(record)
    assert text.isascii() and json.loads(text)["nickname"] == "Zo\u00e9 \u212a"


def test_redaction_patterns():
    assert LONG_KEY not in redact(f"Authorization: Bearer {LONG_KEY}")
    assert LONG_KEY not in redact(f'{{"apiKey": "{LONG_KEY}"}}')
    assert "whsec_" not in redact("secret whsec_abcDEF123=")
    # Each word that lets a line be scanned, in any case, and a line that is not ASCII.
    for text in (f"BEARER {LONG_KEY}", f'"API-KEY":"{LONG_KEY}"', f"AUTHORIZATION={LONG_KEY}",
                 f"Secret: {LONG_KEY}", f"x whsec_{LONG_KEY}", f"\u017fecret={LONG_KEY}"):  # the long s: (?i) s
        assert LONG_KEY not in redact(text), text
    assert redact('{"msg":"request","status":200}') == '{"msg":"request","status":200}'


def test_keys_are_stored_hashed_or_encrypted(client, keyed, app):
    response = client.post("/v1/api/hooks", json={"handle": "tiktok", "targetUrl": "https://hooks.example.com/x"},
                           headers=LONG_AUTH)
    assert response.status_code == 201
    svc = app.extensions["tiktok_following"]
    with svc.engine.connect() as conn:
        dump = " ".join(str(row) for table in ("watches", "subscriptions", "auth_checks")
                        for row in conn.execute(text(f"SELECT * FROM {table}")))
    assert LONG_KEY not in dump and response.get_json()["secret"] not in dump
    assert key_hash(svc.settings.secret_key, LONG_KEY) in dump


def test_key_vault_rotation():
    old, new = KeyVault("old-secret"), KeyVault("new-secret", ("old-secret",))
    token = old.encrypt(LONG_KEY)
    assert new.decrypt(token) == LONG_KEY
    rotated = new.reencrypt(token)
    assert KeyVault("new-secret").decrypt(rotated) == LONG_KEY
    assert KeyVault("other").decrypt(token) is None


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readiness_fails_without_database(client, app):
    from sqlalchemy import create_engine
    app.extensions["tiktok_following"].engine = create_engine("sqlite:////proc/nope/x.db")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["code"] == "not_ready"


def test_metrics_count_requests_upstream_calls_and_credits(client, keyed):
    client.post("/v1/zapier/following", json={"handle": "tiktok"}, headers=LONG_AUTH)
    text_ = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="POST",route="/v1/<platform:platform>/following",status="200"}' in text_
    assert 'upstream_calls_total{outcome="ok"}' in text_
    assert 'upstream_credits_spent_total{platform="zapier"}' in text_


def test_openapi_document(client):
    doc = client.get("/openapi.json").get_json()
    paths = doc["paths"]
    for path in ("/v1/{platform}/auth/test", "/v1/{platform}/following", "/v1/{platform}/triggers/new-following",
                 "/v1/{platform}/hooks", "/v1/{platform}/hooks/{sub_id}", "/healthz", "/readyz", "/metrics"):
        assert path in paths
    following = paths["/v1/{platform}/following"]["post"]
    assert set(map(str, (400, 401, 402, 404, 429, 502, 504))) <= set(following["responses"])
    platform_param = next(p for p in paths["/v1/{platform}/following"]["parameters"] if p["name"] == "platform")
    assert platform_param["schema"]["enum"] == ["zapier", "make", "api"]
    request_schema = doc["components"]["schemas"]["FollowingRequest"]
    filters = {"verifiedOnly", "excludePrivate", "minFollowers", "maxFollowers", "keywords"}
    assert set(request_schema["properties"]) == {"handle", "count", "minTime", "limit"} | filters
    for name in ("TriggerRequest", "SubscriptionCreate"):
        assert filters <= set(doc["components"]["schemas"][name]["properties"]), name
    keywords = request_schema["properties"]["keywords"]
    assert (keywords["minItems"], keywords["maxItems"], keywords["items"]["maxLength"]) == (1, 20, 100)
    check = paths["/v1/{platform}/following/check"]["post"]
    assert set(map(str, (200, 400, 401, 402, 404, 429, 502, 504))) <= set(check["responses"])
    assert set(doc["components"]["schemas"]["CheckResponse"]["properties"]) == {"follows", "account", "complete", "pagesRead"}
    assert {"eventId", "event"} <= set(doc["components"]["schemas"]["FollowEvent"]["required"])
    assert doc["components"]["schemas"]["Error"]["required"] == ["code", "error"]
