"""The Make custom app in manifests/make:

1. schema: every app file is valid against Make's own JSON Schemas (../shared/make-app-schemas);
2. lint: what those schemas cannot see (references, trigger order, pagination, error map);
3. contract: each module's communication, rendered by tests/make_iml.py, sent to a live
   service backed by the fake upstream.
"""
from __future__ import annotations

import copy
import fnmatch
import http.server
import json
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.conftest import API_KEY, start_service, start_worker, stop_service, stop_worker, unique_handle
from tests.make_iml import (
    MISSING,
    build_request,
    HttpRequest,
    MakeApp,
    MakeError,
    TriggerState,
    evaluate,
    expressions,
    load_jsonc,
    merge_epoch,
    render,
    run,
    send,
    strip_jsonc,
)

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "manifests" / "make"
SHARED_DIR = Path(os.environ.get("SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared")
SCHEMA_DIR = SHARED_DIR / "make-app-schemas"
SCHEMA_BASE_URI = "https://make-app-schemas.invalid/"
DRAFT7_META_URI = "http://json-schema.org/draft-07/schema"
PLACEHOLDER_URL = "https://tiktok-following.example.com/v1/make"

APP = MakeApp(APP_DIR)
CONNECTION = APP.connection("dumplingai")
SEARCH = APP.module("listFollowing")
TRIGGER = APP.module("watchFollowEvents")
LEGACY_TRIGGER = APP.module("watchNewFollowing")  # unchanged for the scenarios that use it
CHECK = APP.module("checkFollowing")
INSTANT = APP.module("watchNewFollowingInstant")
UNIVERSAL = APP.module("makeApiCall")
WEBHOOK = APP.webhook("newFollowing")
UNFOLLOWS = APP.module("watchUnfollows")
UNFOLLOWS_INSTANT = APP.module("watchUnfollowsInstant")
UNFOLLOW_WEBHOOK = APP.webhook("unfollowed")
CROWDS = APP.module("watchFollowedByMany")
CROWDS_INSTANT = APP.module("watchFollowedByManyInstant")
CROWD_WEBHOOK = APP.webhook("followedByMany")
WEBHOOKS = APP.components["webhook"]


def _rel(path: Path) -> str:
    return path.relative_to(APP_DIR).as_posix()


APP_FILES = sorted({_rel(p) for p in APP.code_files()})


def _names(params) -> list[str]:
    return [p["name"] for p in (params or []) if isinstance(p, dict)]


def _refs(template, root: str) -> set[str]:
    """`x` for every `root.x` used in the IML of `template`."""
    found = set()
    for expr in expressions(template):
        found.update(re.findall(rf"(?<![\w.]){root}\.([A-Za-z_$][\w$]*)", expr))
    return found


# =========================================================================== 1. schema
def _require_schemas():
    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"Make app schemas not found at {SCHEMA_DIR} (set SHARED_DIR)")


def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        if path.name == "file-map.json":
            continue
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((SCHEMA_BASE_URI + path.name, Resource.from_contents(contents, default_specification=DRAFT7)))
    resources.append((DRAFT7_META_URI, Resource.from_contents(Draft7Validator.META_SCHEMA, default_specification=DRAFT7)))
    return Registry().with_resources(resources)


def schema_for(rel_path: str) -> str | None:
    """The schema file name for an app file, chosen like the VS Code extension does
    (file-map.json, first match wins); *.static-params.iml.json -> parameters.json."""
    name = rel_path.rsplit("/", 1)[-1]
    if name.endswith(".static-params.iml.json"):
        return "parameters.json"
    file_map = json.loads((SCHEMA_DIR / "file-map.json").read_text(encoding="utf-8"))
    for entry in file_map:
        for pattern in entry["fileMatch"]:
            subject = rel_path if "/" in pattern else name
            if fnmatch.fnmatchcase(subject, pattern.replace("**/", "*")):
                return entry["url"].rsplit("/", 1)[-1]
    return None


def _validator(schema_name: str) -> Draft7Validator:
    return Draft7Validator({"$ref": SCHEMA_BASE_URI + schema_name}, registry=_registry())


def _errors(schema_name: str, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in _validator(schema_name).iter_errors(instance)]


@pytest.mark.parametrize("rel_path", APP_FILES)
def test_schema(rel_path):
    _require_schemas()
    schema_name = schema_for(rel_path)
    assert schema_name, f"no Make schema matches {rel_path}: rename it as the app editor would"
    assert (SCHEMA_DIR / schema_name).is_file(), schema_name
    errors = _errors(schema_name, load_jsonc(APP_DIR / rel_path))
    assert not errors, f"{rel_path} is not a valid {schema_name}:\n" + "\n".join(errors)


def test_schema_choice_follows_file_map():
    _require_schemas()
    expected = {
        "makecomapp.json": "makecomapp.schema.json",
        "general/base.iml.json": "base.json",
        "modules/groups.json": "groups.json",
        "connections/dumplingai/dumplingai.communication.iml.json": "api.json",
        "connections/dumplingai/dumplingai.params.iml.json": "parameters.json",
        "modules/watchNewFollowing/watchNewFollowing.epoch.iml.json": "epoch.json",
        "modules/watchNewFollowing/watchNewFollowing.static-params.iml.json": "parameters.json",
        "modules/listFollowing/listFollowing.mappable-params.iml.json": "parameters.json",
        "modules/listFollowing/listFollowing.interface.iml.json": "parameters.json",
        "modules/listFollowing/listFollowing.samples.iml.json": "samples.json",
        "webhooks/newFollowing/newFollowing.attach.iml.json": "api.json",
        "webhooks/newFollowing/newFollowing.detach.iml.json": "api.json",
    }
    for rel_path, schema_name in expected.items():
        assert rel_path in APP_FILES, rel_path
        assert schema_for(rel_path) == schema_name, rel_path


def test_schema_catches_broken_files():
    """The validator is really wired (refs resolve, rules bite)."""
    _require_schemas()
    trigger = copy.deepcopy(TRIGGER.code("communication"))
    del trigger["response"]["trigger"]["order"]
    assert _errors("api.json", trigger)
    base = copy.deepcopy(APP.base)
    base["response"]["error"]["401"]["type"] = "NoSuchError"
    assert _errors("base.json", base)
    epoch = copy.deepcopy(TRIGGER.code("epoch"))
    del epoch["response"]["output"]["date"]
    assert _errors("epoch.json", epoch)
    search = copy.deepcopy(SEARCH.code("communication"))
    del search["body"]
    assert _errors("api.json", search)
    params = copy.deepcopy(SEARCH.code("mappableParams"))
    params[0]["schema"] = {"type": 12}  # checked against the draft-07 meta-schema
    assert _errors("parameters.json", params)
    project = copy.deepcopy(APP.project)
    del project["components"]["endpoint"]
    assert _errors("makecomapp.schema.json", project)


def test_every_json_file_is_part_of_the_app():
    on_disk = {_rel(p) for p in APP_DIR.rglob("*.json")}
    assert on_disk == set(APP_FILES), "files on disk but not in makecomapp.json (or missing): " \
        f"{sorted(on_disk ^ set(APP_FILES))}"


def test_jsonc_comments_are_stripped_outside_strings():
    text = '{\n // a comment\n "url": "https://x.example//not-a-comment", /* block\n */ "n": 1 // end\n}'
    assert json.loads(strip_jsonc(text)) == {"url": "https://x.example//not-a-comment", "n": 1}
    assert json.loads(strip_jsonc('{"s": "a \\" // b"}')) == {"s": 'a " // b'}


# =========================================================================== 2. lint
CONNECTION_PARAMS = set(_names(CONNECTION.code("params")))
MODULES = APP.components["module"]


def _module_params(module) -> set[str]:
    return set(_names(module.code("staticParams"))) | set(_names(module.code("mappableParams")))


def test_lint_every_iml_expression_parses():
    ctx = {"parameters": {}, "connection": {}, "webhook": {}, "body": {}, "item": {}, "headers": {},
           "statusCode": 200, "common": {}, "temp": {}, "data": {}}
    for rel_path in APP_FILES:
        for expr in expressions(load_jsonc(APP_DIR / rel_path)):
            evaluate(expr, ctx)  # raises on anything tests/make_iml.py (and so this app) does not support


def test_lint_parameters_used_are_declared():
    for name, module in MODULES.items():
        declared = _module_params(module)
        for code in ("communication", "epoch"):
            used = _refs(module.code(code), "parameters")
            assert used <= declared, f"module {name} {code} uses undeclared parameters {used - declared}"
    used = _refs(CONNECTION.code("communication"), "parameters")
    assert used <= CONNECTION_PARAMS, used - CONNECTION_PARAMS
    for name, webhook in WEBHOOKS.items():
        webhook_params = set(_names(webhook.code("params")))
        for code in ("attach", "detach", "communication"):
            used = _refs(webhook.code(code), "parameters")
            assert used <= webhook_params, f"webhook {name} {code} uses undeclared parameters {used - webhook_params}"
    assert not _refs(APP.base, "parameters"), "the base must not depend on a module's parameters"


def test_lint_connection_references_are_connection_parameters():
    templates = {"base": APP.base}
    for name, module in MODULES.items():
        templates.update({f"{name}.{code}": module.code(code) for code in ("communication", "epoch")})
    for name, webhook in WEBHOOKS.items():
        templates.update({f"{name}.{code}": webhook.code(code) for code in ("attach", "detach", "communication")})
    for where, template in templates.items():
        used = _refs(template, "connection")
        assert used <= CONNECTION_PARAMS, f"{where} uses {used - CONNECTION_PARAMS}, not connection parameters"
    assert _refs(APP.base, "connection") == {"baseUrl", "apiKey", "dailyBudget"}


@pytest.mark.parametrize("webhook", list(WEBHOOKS.values()), ids=list(WEBHOOKS))
def test_lint_webhook_detach_uses_only_what_attach_stores(webhook):
    attach, detach = webhook.code("attach"), webhook.code("detach")
    stored = set(attach["response"]["data"])
    assert stored == {"externalHookId"}, "store the subscription id under Make's documented name"
    assert attach["response"]["data"]["externalHookId"] == "{{body.id}}"
    assert _refs(detach, "webhook") <= stored, _refs(detach, "webhook") - stored
    assert _refs(detach, "webhook") == {"externalHookId"}
    assert _refs(attach, "webhook") == {"url"}
    assert attach["body"]["targetUrl"] == "{{webhook.url}}"
    # Already gone (404) is success: look first, delete only a subscription that is still listed.
    look, delete = detach
    assert look["method"] == "GET" and look["url"] == "/hooks"
    assert look["response"]["temp"] == {"ids": "{{map(body; 'id')}}"}
    assert delete["condition"] == "{{contains(temp.ids; webhook.externalHookId)}}"
    assert delete["method"] == "DELETE" and delete["url"] == "/hooks/{{webhook.externalHookId}}"
    assert attach["method"] == "POST" and attach["url"] == "/hooks"


@pytest.mark.parametrize("module, webhook", [(INSTANT, "newFollowing"), (UNFOLLOWS_INSTANT, "unfollowed"),
                                             (CROWDS_INSTANT, "followedByMany")], ids=lambda v: getattr(v, "name", v))
def test_lint_instant_trigger_is_wired_to_an_attached_webhook(module, webhook):
    assert module.meta["moduleType"] == "instant_trigger"
    assert module.meta["webhook"] == webhook
    assert WEBHOOKS[webhook].meta["webhookType"] == "web"  # dedicated
    assert WEBHOOKS[webhook].meta["connection"] == "dumplingai"
    assert WEBHOOKS[webhook].code("communication") == {"output": "{{body}}"}
    sample = module.code("samples")
    assert render(WEBHOOKS[webhook].code("communication")["output"], {"body": sample}) == sample
    assert list(sample) == _names(module.code("interface"))
    assert {m.meta["webhook"] for m in MODULES.values() if m.meta.get("moduleType") == "instant_trigger"} == set(WEBHOOKS)


def test_lint_polling_trigger_order_is_desc():
    triggers = [m for m in MODULES.values() if m.meta.get("moduleType") == "trigger"]
    assert triggers
    for module in triggers:
        trig = module.code("communication")["response"]["trigger"]
        # The legacy module keeps the id its scenarios remember (Make: changing response.trigger
        # breaks scenarios); the current one breaks same-instant ties by eventId.
        tie_breaker = "sequence" if module is LEGACY_TRIGGER else "eventId"
        assert trig == {"type": "date", "order": "desc", "id": f"{{{{item.{tie_breaker}}}}}", "date": "{{item.detectedAt}}"}
        assert module.code("epoch"), "a date trigger needs an epoch so Make offers All / Since / From now on"


def test_lint_epoch_is_limited():
    epoch = TRIGGER.code("epoch")
    assert 1 <= epoch["response"]["limit"] <= 300
    assert epoch["body"]["limit"] <= 300
    assert set(epoch["response"]["output"]) == {"label", "date"}
    assert epoch["response"]["output"]["date"] == "{{item.detectedAt}}"
    comm = TRIGGER.code("communication")
    assert comm["body"]["limit"] == 300, "ask for the most; Make applies the user's Limit after filtering"
    assert comm["response"]["limit"] == "{{parameters.limit}}"


def test_lint_pagination_repeats_every_body_key():
    paginated = 0
    for name, module in MODULES.items():
        comm = module.code("communication")
        if not comm or "pagination" not in comm:
            continue
        paginated += 1
        page_body = comm["pagination"].get("body")
        assert isinstance(page_body, dict), f"{name}: a POST pagination must send a body"
        missing = set(comm["body"]) - set(page_body)
        assert not missing, f"{name}: pagination body drops {missing} (Make replaces the body)"
        assert page_body["handle"] == comm["body"]["handle"]
        assert page_body["minTime"] == "{{body.nextMinTime}}"
        assert comm["pagination"]["condition"] == "{{body.hasMore}}"
        # Only what is still wanted: min(remaining, upstream max) is then asked per page by the service.
        assert "count" not in comm["body"] and "count" not in page_body
        assert comm["body"]["limit"] == "{{ifempty(parameters.limit; 1000)}}"
        assert page_body["limit"] == "{{if(parameters.limit; parameters.limit - body.count; 1000)}}"
        for limit, count, expected in ((150, 100, 50), (None, 100, 1000), (25, 20, 5)):
            ctx = {"parameters": {"handle": "x", **({"limit": limit} if limit else {})},
                   "body": {"count": count, "nextMinTime": 7}}
            assert render(page_body, ctx) == {"handle": "x", "limit": expected, "minTime": 7}
    assert paginated == 1


def test_lint_base_error_map():
    error = APP.base["response"]["error"]
    expected = {"400": "DataError", "401": "InvalidAccessTokenError", "402": "InvalidConfigurationError",
                "429": "RateLimitError", "502": "ConnectionError", "504": "ConnectionError"}
    for status, type_ in expected.items():
        assert error[status]["type"] == type_, status
        assert "body.error" in error[status]["message"], status
    # A 400 names the field (the service answers per-field messages in `fields`).
    fields_400 = {"body": {"error": "Some fields are missing or invalid; see 'fields'.", "code": "invalid_request",
                           "fields": {"handle": ["Use a profile link like https://www.tiktok.com/@name."]}}}
    assert render(error["400"]["message"], fields_400) == "Handle: Use a profile link like https://www.tiktok.com/@name."
    fields_400["body"]["fields"].update(limit=["Must be between 1 and 1000."], count=["Not an integer."])
    assert render(error["400"]["message"], fields_400) == (
        "Handle: Use a profile link like https://www.tiktok.com/@name. Also invalid: limit, count.")
    assert render(error["400"]["message"], {"body": {"error": "Plain sentence."}}) == "Plain sentence."
    assert "body.error" in error["message"]
    conn_error = CONNECTION.code("communication")["response"]["error"]
    for status in ("401", "402", "429", "502", "504"):
        assert conn_error[status]["type"] == expected[status]


def test_lint_authorization_is_sanitized():
    for where, template in (("base", APP.base), ("connection", CONNECTION.code("communication"))):
        assert "request.headers.authorization" in template["log"]["sanitize"], where
        # The budget header is not a secret; the key's header is sanitized under its exact name.
        assert list(template["headers"]) == ["authorization", "x-daily-credit-budget"], \
            f"{where}: header name must match the sanitize path"
        assert template["headers"]["authorization"].startswith("Bearer {{")
    assert CONNECTION.code("communication")["log"]["sanitize"] == ["request.headers.authorization"]


def test_lint_service_url_lives_in_one_place():
    hits = [rel for rel in APP_FILES if PLACEHOLDER_URL in (APP_DIR / rel).read_text(encoding="utf-8")]
    assert hits == ["connections/dumplingai/dumplingai.params.iml.json"]
    assert APP.base["baseUrl"] == "{{connection.baseUrl}}"
    assert CONNECTION.code("communication")["url"] == "{{parameters.baseUrl}}/auth/test"
    for name, module in MODULES.items():
        for code in ("communication", "epoch"):
            directive = module.code(code)
            if directive and "url" in directive:
                assert directive["url"].startswith("/"), f"{name}.{code} must use the base URL"
    base_param = next(p for p in CONNECTION.code("params") if p["name"] == "baseUrl")
    pattern = re.compile(base_param["validate"]["pattern"])
    assert pattern.match(base_param["default"])
    assert not pattern.match(PLACEHOLDER_URL + "/")
    assert not pattern.match(PLACEHOLDER_URL.replace("https://", "http://")), "https only"
    assert base_param["advanced"] is True and base_param["default"] == PLACEHOLDER_URL


def test_lint_connection_parameters():
    api_key = next(p for p in CONNECTION.code("params") if p["name"] == "apiKey")
    assert api_key["type"] == "password" and api_key["required"] is True
    assert api_key["editable"] is True, "Make's review: the user can update the key in place"
    assert _names(CONNECTION.code("params")) == ["apiKey", "dailyBudget", "baseUrl"], \
        "only the credentials, the optional budget (and the advanced URL)"
    budget = next(p for p in CONNECTION.code("params") if p["name"] == "dailyBudget")
    assert budget["type"] == "uinteger" and budget["required"] is False
    assert "https://app.dumplingai.com/api-keys" in api_key["help"]
    assert CONNECTION.meta["connectionType"] == "basic"
    comm = CONNECTION.code("communication")
    assert comm["method"] == "GET"
    assert comm["response"]["metadata"]["value"] == "{{body.label}}"


def test_lint_every_parameter_has_a_label_and_help():
    groups = [CONNECTION.code("params")] + [webhook.code("params") for webhook in WEBHOOKS.values()]
    for module in MODULES.values():
        groups += [module.code("staticParams"), module.code("mappableParams")]
    for params in groups:
        for param in params or []:
            assert param.get("label") and param.get("help"), param["name"]


# Proper nouns and acronyms keep their capitals in Make's sentence case.
PROPER = {"TikTok", "DumplingAI", "API", "URL", "ID", "GET", "POST", "DELETE", "Following)", "(TikTok"}


def _sentence_case_problems(label: str) -> list[str]:
    words = label.split()
    problems = [] if words and words[0][:1].isupper() else [label]
    return problems + [w for w in words[1:] if any(c.isupper() for c in w) and w not in PROPER]


def test_lint_labels_are_sentence_case():
    assert _sentence_case_problems("List Accounts a User Follows") == ["Accounts", "User", "Follows"]
    labels = [c.meta["label"] for kind in ("module", "webhook", "connection") for c in APP.components[kind].values()]
    labels += [g["label"] for g in load_jsonc(APP_DIR / "modules/groups.json")]
    for params in [CONNECTION.code("params")] + [w.code("params") for w in WEBHOOKS.values()] + [
            m.code(code) for m in MODULES.values() for code in ("staticParams", "mappableParams", "interface")]:
        for param in params or []:
            labels.append(param["label"])
            labels += [p["label"] for p in param.get("spec") or [] if isinstance(p, dict)]
    for label in labels:
        assert not _sentence_case_problems(label), f"{label!r} is not sentence case"


def test_lint_universal_module_is_relative_and_authorized():
    assert UNIVERSAL.meta["moduleType"] == "universal" and UNIVERSAL.meta["label"] == "Make an API call"
    comm = UNIVERSAL.code("communication")
    assert comm["url"].startswith("/"), "a relative path, so the key never goes to another host"
    assert "headers" not in comm, "the base adds the connection's authorization"
    url = next(p for p in UNIVERSAL.code("mappableParams") if p["name"] == "url")
    pattern = re.compile(url["validate"]["pattern"])
    assert pattern.match("following") and pattern.match("hooks/sub_1/deliveries")
    for bad in ("/following", "https://evil.example/x", "//evil.example"):
        assert not pattern.match(bad), bad
    # Whatever is typed, the request stays on the service URL.
    base_url = "https://svc.example/v1/make"
    for typed in ("https://evil.example/x", "//evil.example", "following"):
        request = build_request(comm, {"connection": {"baseUrl": base_url, "apiKey": "k"},
                                       "parameters": {"url": typed, "method": "GET"}}, APP.base)
        assert request.url.startswith(base_url + "/"), request.url
        assert request.headers["authorization"] == "Bearer k"


def test_lint_modules_and_groups():
    assert SEARCH.meta["moduleType"] == "search" and SEARCH.meta["label"] == "List accounts a user follows"
    assert TRIGGER.meta["label"] == "Watch new followed accounts"
    assert LEGACY_TRIGGER.meta["label"] == "Watch new followed accounts (legacy)"
    assert CHECK.meta["moduleType"] == "search" and CHECK.meta["label"] == "Check whether an account follows another"
    assert INSTANT.meta["label"] == "Watch new followed accounts (instant)"
    grouped = {m for group in load_jsonc(APP_DIR / "modules/groups.json") for m in group["modules"]}
    assert grouped == set(MODULES)
    for module in MODULES.values():
        assert module.meta["connection"] == "dumplingai"


# =========================================================================== 3. contract (live service)
@pytest.fixture
def make(live_service, fake_upstream):
    """The connection as Make stores it, pointed at the live service."""
    return {"apiKey": API_KEY, "baseUrl": live_service.url + "/v1/make"}


def _ctx(connection: dict, **kwargs) -> dict:
    return {"connection": connection, **kwargs}


def _interface(module) -> list[str]:
    return _names(module.code("interface"))


def _get(connection: dict, path: str) -> requests.Response:
    return requests.get(connection["baseUrl"] + path, headers={"Authorization": f"Bearer {connection['apiKey']}"},
                        timeout=10)


def test_contract_connection_test(make):
    result = run(CONNECTION.code("communication"), {"parameters": make})
    assert result.requests[0].method == "GET"
    assert result.requests[0].url == make["baseUrl"] + "/auth/test"
    assert result.requests[0].headers == {"authorization": f"Bearer {API_KEY}"}
    label = result.metadata["value"]
    assert result.metadata["type"] == "text"
    assert label.startswith("key ") and "DumplingAI" not in label and API_KEY not in label  # no app name; at most the last 4 characters


def test_contract_connection_rejects_a_bad_key(make, fake_upstream):
    with pytest.raises(MakeError) as err:
        run(CONNECTION.code("communication"), {"parameters": dict(make, apiKey="not-a-registered-key")})
    assert err.value.type == "InvalidAccessTokenError"
    assert err.value.status == 401
    assert err.value.message


def test_contract_search_follows_pagination_to_the_end(make, fake_upstream):
    """Empty Limit = every account. The upstream here honours at most 10 per page, so each service
    call stops at its page cap (10 pages) and Make's pagination continues from nextMinTime."""
    handle = unique_handle("mk")
    seeded = fake_upstream.seed(handle, 250)
    fake_upstream.max_count = 10
    before = fake_upstream.credits_spent()
    result = run(SEARCH.code("communication"), _ctx(make, parameters={"handle": "@" + handle}), APP.base)
    ids = [o["id"] for o in result.outputs]
    assert ids == [str(e["user"]["id"]) for e in seeded], "every seeded account exactly once, newest first"
    assert len(result.requests) == 3, "the search must have followed pagination"
    first, *pages = result.requests
    assert first.method == "POST" and first.url == make["baseUrl"] + "/following"
    assert first.body == {"handle": "@" + handle, "limit": 1000}
    for previous, page in zip(result.responses, pages):
        assert page.body == {"handle": "@" + handle, "limit": 1000, "minTime": previous.body["nextMinTime"]}
    assert result.responses[-1].body["hasMore"] is False
    assert result.responses[-1].body["nextMinTime"] is None
    for output in result.outputs:
        assert set(output) == set(_interface(SEARCH))
    # Pages of 10 as the upstream allows (the upstream's default would be 20 per page if the page
    # size were left to it, and 10 is all it honours). Within one service call each later page
    # repeats the boundary account (so a follow sharing its second is never skipped): 9 new per
    # page, 3 pages more than 25.
    assert fake_upstream.credits_spent() - before == 28 == sum(r.body["pages"] for r in result.responses)
    asked = [r.body.get("count") for r in fake_upstream.requests if r.body.get("handle") == handle]
    assert set(asked[:-1]) == {100}, asked


@pytest.mark.parametrize("max_count, requests_, credits", [(100, 1, 2), (10, 2, 17)])
def test_contract_search_limit_spends_only_what_it_must(make, fake_upstream, max_count, requests_, credits):
    """Limit 150 costs ceil(150 / what the upstream honours per page) credits, however Make pages:
    each request asks only for what is still missing. Later pages of one service call ask one
    more for the repeated boundary account; an upstream capping count at 10 makes that 9 new
    per page (17 credits instead of 15)."""
    handle = unique_handle("mk")
    seeded = fake_upstream.seed(handle, 400)
    fake_upstream.max_count = max_count
    before = fake_upstream.credits_spent()
    params = {"handle": f"https://www.tiktok.com/@{handle}", "limit": 150}
    result = run(SEARCH.code("communication"), _ctx(make, parameters=params), APP.base)
    assert [o["id"] for o in result.outputs] == [str(e["user"]["id"]) for e in seeded[:150]]
    assert result.requests[0].body == params
    assert len(result.requests) == requests_
    if requests_ > 1:
        assert result.requests[1].body["limit"] == 150 - result.responses[0].body["count"]
    assert fake_upstream.credits_spent() - before == credits


@pytest.mark.parametrize("upstream_status, status, type_", [
    (401, 401, "InvalidAccessTokenError"),
    (403, 402, "InvalidConfigurationError"),
    (404, 404, "DataError"),
    (503, 429, "RateLimitError"),
    (500, 502, "ConnectionError"),
])
def test_contract_errors_map_to_make_error_types(make, fake_upstream, upstream_status, status, type_):
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 3)
    fake_upstream.fail_next(upstream_status, times=5)  # the service may retry some failures
    with pytest.raises(MakeError) as err:
        run(SEARCH.code("communication"), _ctx(make, parameters={"handle": handle}), APP.base)
    assert (err.value.status, err.value.type) == (status, type_)
    assert err.value.message and "[" not in err.value.message[:1]


def test_contract_validation_error_is_a_data_error(make):
    with pytest.raises(MakeError) as err:
        run(SEARCH.code("communication"), _ctx(make, parameters={"handle": "not a handle!", "limit": 5000}), APP.base)
    assert (err.value.status, err.value.type) == (400, "DataError")
    assert re.fullmatch(r"Handle: \S.* Also invalid: limit\.", err.value.message), err.value.message
    assert "see 'fields'" not in err.value.message


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_contract_polling_trigger(make, fake_upstream):
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 5)
    comm, epoch = TRIGGER.code("communication"), merge_epoch(TRIGGER.code("communication"), TRIGGER.code("epoch"))
    ctx = _ctx(make, parameters={"handle": handle, "limit": 2})

    # Opening "Choose where to start" starts the watch; Make gets no baseline samples.
    first = run(epoch, ctx, APP.base)
    assert first.requests[0].url == make["baseUrl"] + "/triggers/new-following"
    assert first.requests[0].body == {"handle": handle, "limit": 300}
    assert first.outputs == []

    state = TriggerState.all()
    assert state.take(run(comm, ctx, APP.base)) == []

    followed = fake_upstream.follow(handle)
    result = run(comm, ctx, APP.base)
    assert result.requests[0].body == {"handle": handle, "limit": 300}
    events = state.take(result)
    assert len(events) == 1
    event = events[0]
    assert set(event) == set(_interface(TRIGGER))
    assert event["id"] == str(followed["user"]["id"]) and event["uniqueId"] == followed["user"]["uniqueId"]
    assert event["followedBy"] == handle
    assert isinstance(event["sequence"], int) and event["sequence"] > 0
    assert event["detectedAt"].endswith("Z") and _iso(event["detectedAt"])

    # The next run sees the same event in the answer but Make outputs it only once.
    again = run(comm, ctx, APP.base)
    assert [o["sequence"] for o in again.outputs].count(event["sequence"]) == 1
    assert state.take(again) == []

    # Three more follows, Limit 2: two now (oldest first), the third on the next run.
    more = [fake_upstream.follow(handle) for _ in range(3)]
    batch1 = state.take(run(comm, ctx, APP.base))
    batch2 = state.take(run(comm, ctx, APP.base))
    assert [len(batch1), len(batch2)] == [2, 1]
    delivered = batch1 + batch2
    assert sorted(e["uniqueId"] for e in delivered) == sorted(m["user"]["uniqueId"] for m in more)
    sequences = [e["sequence"] for e in delivered]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3 and min(sequences) > event["sequence"]
    assert state.take(run(comm, ctx, APP.base)) == []

    # The epoch lists what can be chosen as a start, with label and date.
    choices = run(epoch, ctx, APP.base)
    assert len(choices.outputs) == 4
    for choice in choices.outputs:
        assert set(choice) == {"label", "date"}
        assert re.fullmatch(r".+ \(@[\w.]+\)", choice["label"]) and _iso(choice["date"])


def test_contract_trigger_since_is_strictly_after(make, fake_upstream):
    """The service's own `since` (what "Since specific date" means): events detected strictly after it."""
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 2)
    comm = TRIGGER.code("communication")
    ctx = _ctx(make, parameters={"handle": handle, "limit": 10})
    run(comm, ctx, APP.base)  # starts the watch
    fake_upstream.follow(handle)
    event = run(comm, ctx, APP.base).outputs[0]
    request = build_request(comm, ctx, APP.base)
    request.body = dict(request.body, since=event["detectedAt"])
    answer = send(request)
    assert answer.status == 200
    assert [e["sequence"] for e in answer.body] == [], (
        f"since={event['detectedAt']} must exclude the event detected at that very time; got {answer.body}")


def test_contract_trigger_from_now_on_and_since(make, fake_upstream):
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 2)
    comm = TRIGGER.code("communication")
    ctx = _ctx(make, parameters={"handle": handle, "limit": 10})
    run(comm, ctx, APP.base)  # starts the watch
    old = fake_upstream.follow(handle)
    old_events = run(comm, ctx, APP.base).outputs
    assert [e["uniqueId"] for e in old_events] == [old["user"]["uniqueId"]]
    time.sleep(1.1)  # detectedAt may be whole seconds
    from_now = TriggerState.from_now()
    since = TriggerState.since(old_events[0]["detectedAt"])
    new = fake_upstream.follow(handle)
    result = run(comm, ctx, APP.base)
    assert [e["uniqueId"] for e in from_now.take(result)] == [new["user"]["uniqueId"]]
    assert [e["uniqueId"] for e in since.take(result)] == [new["user"]["uniqueId"]]
    assert [e["uniqueId"] for e in TriggerState.all().take(result)] == [old["user"]["uniqueId"],
                                                                        new["user"]["uniqueId"]]


class _Hooks(http.server.ThreadingHTTPServer):
    """Stands in for Make's webhook URL."""

    def __init__(self):
        self.received: list[tuple[dict, dict]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N805
                length = int(handler.headers.get("content-length") or 0)
                body = json.loads(handler.rfile.read(length) or b"null")
                self.received.append(({k.lower(): v for k, v in handler.headers.items()}, body))
                handler.send_response(200)
                handler.send_header("content-length", "8")
                handler.end_headers()
                handler.wfile.write(b"Accepted")

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/make-hook/abc123"


@pytest.fixture
def make_webhook_url():
    server = _Hooks()
    yield server
    server.shutdown()
    server.server_close()


def test_contract_webhook_attach_then_detach(make, fake_upstream, make_webhook_url):
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 3)
    webhook = {"id": 4242, "url": make_webhook_url.url}
    attached = run(WEBHOOK.code("attach"), _ctx(make, parameters={"handle": "@" + handle}, webhook=webhook), APP.base)
    assert attached.requests[0].method == "POST" and attached.requests[0].url == make["baseUrl"] + "/hooks"
    assert attached.requests[0].body == {"handle": "@" + handle, "targetUrl": make_webhook_url.url}
    assert attached.responses[0].status == 201
    hook_id = attached.data["externalHookId"]
    assert hook_id and hook_id == attached.responses[0].body["id"]

    sub = _get(make, f"/hooks/{hook_id}")
    assert sub.status_code == 200
    assert sub.json()["handle"] == handle and sub.json()["targetUrl"] == make_webhook_url.url
    assert sub.json()["platform"] == "make"

    webhook.update(attached.data)  # Make keeps response.data in the webhook's data
    detached = run(WEBHOOK.code("detach"), _ctx(make, parameters={"handle": handle}, webhook=webhook), APP.base)
    assert [r.method for r in detached.requests] == ["GET", "DELETE"]
    assert detached.requests[1].url == make["baseUrl"] + f"/hooks/{hook_id}"
    assert detached.responses[1].status == 204
    assert _get(make, f"/hooks/{hook_id}").status_code == 404

    # Detaching again (already gone) succeeds without a DELETE that would answer 404.
    again = run(WEBHOOK.code("detach"), _ctx(make, webhook=webhook), APP.base)
    assert [(r.method, s.status) for r, s in zip(again.requests, again.responses)] == [("GET", 200)]


def _with_worker_until_delivered(live_service, fake_upstream, tmp_path, receiver, act):
    """`act()` with the service's worker running, then wait (30 s at most) for a delivery to
    `receiver`; what `act` returned."""
    worker = start_worker(live_service.database_url, fake_upstream.url, tmp_path / "worker.log",
                          REFRESH_WINDOW_SECONDS=0, POLL_INTERVAL_SECONDS=1)
    try:
        done = act()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not receiver.received:
            time.sleep(0.2)
    finally:
        stop_worker(worker)
    assert receiver.received, f"no delivery; see {tmp_path / 'worker.log'}"
    return done


def test_contract_instant_trigger_receives_one_event(make, fake_upstream, live_service, make_webhook_url, tmp_path):
    """attach -> the worker delivers ONE follow event to the webhook URL -> the module outputs it."""
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 3)
    attached = run(WEBHOOK.code("attach"), _ctx(make, parameters={"handle": handle}, webhook={"url": make_webhook_url.url}),
                   APP.base)
    secret = attached.responses[0].body.get("secret", "")

    def follow():
        # The worker polls watched handles every POLL_INTERVAL_SECONDS of the web service (300 s
        # by default); a polling-trigger call refreshes the same watch at once, and that refresh
        # queues the delivery for the worker.
        trigger_ctx = _ctx(make, parameters={"handle": handle, "limit": 10})
        run(TRIGGER.code("communication"), trigger_ctx, APP.base)  # baseline, if attach did not take it
        followed = fake_upstream.follow(handle)
        run(TRIGGER.code("communication"), trigger_ctx, APP.base)
        return followed

    followed = _with_worker_until_delivered(live_service, fake_upstream, tmp_path, make_webhook_url, follow)
    headers, body = make_webhook_url.received[0]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers)
    assert secret.startswith("whsec_")
    bundle = render(WEBHOOK.code("communication")["output"], {"body": body})
    assert set(bundle) == set(_interface(INSTANT))
    assert bundle["uniqueId"] == followed["user"]["uniqueId"] and bundle["followedBy"] == handle
    run(WEBHOOK.code("detach"), _ctx(make, webhook=attached.data), APP.base)


def _sweep_due_now(database_url: str, handle: str) -> bool:
    """Time passing, for the live service: its unfollow sweep of `handle` becomes due.
    False while no complete sweep was recorded yet."""
    from sqlalchemy import text

    from integration.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            return conn.execute(text(
                "UPDATE unfollow_sweeps SET next_sweep_at = '2000-01-01 00:00:00' WHERE swept_at IS NOT NULL "
                "AND watch_id IN (SELECT id FROM watches WHERE handle = :h)"), {"h": handle}).rowcount == 1
    finally:
        engine.dispose()


def test_contract_unfollow_polling_trigger(make, fake_upstream, live_service):
    handle = unique_handle("mk")
    entries = fake_upstream.seed(handle, 80)
    comm = UNFOLLOWS.code("communication")
    epoch = merge_epoch(comm, UNFOLLOWS.code("epoch"))
    ctx = _ctx(make, parameters={"handle": handle, "limit": 10, "sweepEvery": 24})
    first = run(epoch, ctx, APP.base)  # the first sweep records the list
    assert first.requests[0].url == make["baseUrl"] + "/triggers/unfollowed"
    assert first.requests[0].body == {"handle": handle, "limit": 300, "sweepEvery": 24}
    assert first.outputs == []
    state = TriggerState.all()
    fake_upstream.unfollow(handle, entries[60]["user"]["id"])  # deeper than a refresh reads
    assert state.take(run(comm, ctx, APP.base)) == []  # not due: no sweep, no credit for one
    assert _sweep_due_now(live_service.database_url, handle)
    events = state.take(run(comm, ctx, APP.base))
    assert [e["id"] for e in events] == [str(entries[60]["user"]["id"])]
    assert set(events[0]) == set(_interface(UNFOLLOWS))
    assert events[0]["event"] == "unfollowed" and events[0]["unfollowedBy"] == handle
    assert state.take(run(comm, ctx, APP.base)) == []  # output once
    fake_upstream.unfollow(handle, entries[4]["user"]["id"])  # among the newest: the run's refresh sees it
    assert [e["id"] for e in state.take(run(comm, ctx, APP.base))] == [str(entries[4]["user"]["id"])]


def test_contract_unfollow_instant_trigger_receives_one_event(make, fake_upstream, live_service, make_webhook_url,
                                                              tmp_path):
    handle = unique_handle("mk")
    entries = fake_upstream.seed(handle, 12)
    webhook = {"url": make_webhook_url.url}
    attached = run(UNFOLLOW_WEBHOOK.code("attach"),
                   _ctx(make, parameters={"handle": handle, "sweepEvery": 1}, webhook=webhook), APP.base)
    assert attached.requests[0].body == {"handle": handle, "targetUrl": make_webhook_url.url, "event": "unfollowed",
                                         "sweepEvery": 1}
    assert attached.responses[0].body["event"] == "unfollowed"
    worker = start_worker(live_service.database_url, fake_upstream.url, tmp_path / "worker.log",
                          REFRESH_WINDOW_SECONDS=0)
    try:
        deadline = time.monotonic() + 30
        while not _sweep_due_now(live_service.database_url, handle):  # the worker's recording sweep
            assert time.monotonic() < deadline, f"no first sweep; see {tmp_path / 'worker.log'}"
            time.sleep(0.2)
        fake_upstream.unfollow(handle, entries[2]["user"]["id"])
        assert _sweep_due_now(live_service.database_url, handle)
        while time.monotonic() < deadline and not make_webhook_url.received:
            time.sleep(0.2)
    finally:
        stop_worker(worker)
    assert make_webhook_url.received, f"no delivery; see {tmp_path / 'worker.log'}"
    _, body = make_webhook_url.received[0]
    bundle = render(UNFOLLOW_WEBHOOK.code("communication")["output"], {"body": body})
    assert set(bundle) == set(_interface(UNFOLLOWS_INSTANT))
    assert bundle["id"] == str(entries[2]["user"]["id"]) and bundle["unfollowedBy"] == handle
    assert bundle["event"] == "unfollowed"
    run(UNFOLLOW_WEBHOOK.code("detach"), _ctx(make, webhook=attached.data), APP.base)


def test_contract_universal_module(make, fake_upstream):
    """"Make an API call": a path on the service, with the connection's key added by the base."""
    comm = UNIVERSAL.code("communication")
    probe = run(comm, _ctx(make, parameters={"url": "auth/test", "method": "GET"}), APP.base)
    assert probe.requests[0].url == make["baseUrl"] + "/auth/test"
    assert probe.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    [out] = probe.outputs
    assert set(out) == set(_interface(UNIVERSAL)) and out["statusCode"] == 200 and out["body"]["ok"] is True

    handle = unique_handle("mk")
    fake_upstream.seed(handle, 12)
    listed = run(comm, _ctx(make, parameters={"url": "following", "method": "POST",
                                              "body": {"handle": handle, "limit": 5}}), APP.base)
    assert listed.outputs[0]["statusCode"] == 200 and listed.outputs[0]["body"]["count"] == 5

    with pytest.raises(MakeError) as err:  # errors go through the base's error handling
        run(comm, _ctx(make, parameters={"url": "following", "method": "POST", "body": {"handle": "bad handle!"}}),
            APP.base)
    assert err.value.status == 400 and err.value.message.startswith("Handle: ")


def test_iml_renderer_basics():
    ctx = {"parameters": {"handle": "x", "limit": 5}, "body": {"a": [1, 2, 3], "error": ""}}
    assert render({"h": "{{parameters.handle}}", "c": "{{parameters.count}}", "l": "{{parameters.limit}}"}, ctx) == \
        {"h": "x", "l": 5}
    assert render("/hooks/{{parameters.limit}}", ctx) == "/hooks/5"
    assert evaluate("ifempty(body.error, 'fallback, with comma')", ctx) == "fallback, with comma"
    assert evaluate("ifempty(body.missing; 'semicolon')", ctx) == "semicolon"
    assert evaluate("body.a[1]", ctx) == 1 and evaluate("body.a[-1]", ctx) == 3
    assert evaluate("body.nothing.deeper", ctx) is MISSING
    assert evaluate("parameters.limit > 3 && !body.error", ctx) is True
    request = HttpRequest("GET", "http://h/x", {}, qs={"a": "b c"})
    assert request.full_url() == "http://h/x?a=b+c"


# --------------------------------------------------------------------- filters, check, eventId
def test_contract_trigger_filters_and_event_ids(make, fake_upstream):
    """Filters go to the service (a filtered account is never a bundle); Make's tie-breaker is
    eventId, and several events of one refresh come out once each, in detection order."""
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 3)
    comm = TRIGGER.code("communication")
    ctx = _ctx(make, parameters={"handle": handle, "limit": 50, "verifiedOnly": True, "keywords": ["user"]})
    state = TriggerState.all()
    assert state.take(run(comm, ctx, APP.base)) == []  # starts the watch
    new = [fake_upstream.follow(handle) for _ in range(20)]  # one refresh: all share detectedAt
    result = run(comm, ctx, APP.base)
    assert result.requests[0].body == {"handle": handle, "limit": 300, "verifiedOnly": True, "keywords": ["user"]}
    events = state.take(result)
    expected = [e["user"]["id"] for e in new if e["user"]["verified"]]
    assert [e["id"] for e in events] == expected and len(expected) >= 1  # oldest first
    assert all(e["event"] == "new_following" and e["eventId"].isdigit() for e in events)
    assert [m.id for m in result.marks] == [o["eventId"] for o in result.outputs]
    assert state.take(run(comm, ctx, APP.base)) == []
    # without the filter the journal still has every event (a filter never changes detection)
    everything = run(comm, _ctx(make, parameters={"handle": handle, "limit": 50}), APP.base)
    assert {o["id"] for o in everything.outputs} == {e["user"]["id"] for e in new}
    # the legacy module still sends only the handle and the limit, and keeps sequence as its id
    legacy = run(LEGACY_TRIGGER.code("communication"), ctx, APP.base)
    assert legacy.requests[0].body == {"handle": handle, "limit": 300}
    assert [m.id for m in legacy.marks] == [o["sequence"] for o in legacy.outputs]


def test_contract_search_filters_per_page(make, fake_upstream):
    handle = unique_handle("mk")
    entries = fake_upstream.seed(handle, 60)
    result = run(SEARCH.code("communication"),
                 _ctx(make, parameters={"handle": handle, "limit": 4, "verifiedOnly": True}), APP.base)
    assert [o["id"] for o in result.outputs] == [e["user"]["id"] for e in entries if e["user"]["verified"]][:4]
    assert result.requests[0].body == {"handle": handle, "limit": 4, "verifiedOnly": True}


def test_contract_webhook_attach_sends_the_filters(make, fake_upstream, make_webhook_url):
    handle = unique_handle("mk")
    fake_upstream.seed(handle, 2)
    webhook = {"id": 4243, "url": make_webhook_url.url}
    params = {"handle": handle, "excludePrivate": True, "maxFollowers": 10_000}
    attached = run(WEBHOOK.code("attach"), _ctx(make, parameters=params, webhook=webhook), APP.base)
    hook_id = attached.data["externalHookId"]
    assert _get(make, f"/hooks/{hook_id}").json()["filters"] == {"excludePrivate": True, "maxFollowers": 10_000}
    webhook.update(attached.data)
    run(WEBHOOK.code("detach"), _ctx(make, webhook=webhook), APP.base)


def test_contract_check_module(make, fake_upstream):
    handle = unique_handle("mk")
    entries = fake_upstream.seed(handle, 150)
    comm = CHECK.code("communication")
    before = fake_upstream.credits_spent()
    found = run(comm, _ctx(make, parameters={"handle": handle, "target": "@" + entries[120]["user"]["uniqueId"]}), APP.base)
    assert len(found.outputs) == 1
    answer = found.outputs[0]
    assert answer["follows"] is True and answer["pagesRead"] == 2 and answer["complete"] is True
    assert answer["account"]["id"] == entries[120]["user"]["id"]
    assert set(answer["account"]) == {i["name"] for i in CHECK.code("interface")[1]["spec"]}
    assert fake_upstream.credits_spent() - before == 2
    no = run(comm, _ctx(make, parameters={"handle": handle, "target": "6800000000000000000"}), APP.base)
    assert no.outputs == [{"follows": False, "account": None, "complete": True, "pagesRead": 2}]
    with pytest.raises(MakeError) as err:
        run(comm, _ctx(make, parameters={"handle": handle, "target": "not a handle"}), APP.base)
    assert (err.value.status, err.value.type) == (400, "DataError") and err.value.message.startswith("Target: ")


# =========================================================================== cost controls (live service)
def test_contract_budget_check_every_and_get_credit_usage(make, fake_upstream):
    key = f"make-budget-{unique_handle()}"  # its own ledger on the shared live service
    fake_upstream.add_key(key)
    connection = dict(make, apiKey=key, dailyBudget=2)
    usage_module = APP.module("getCreditUsage")
    before = run(usage_module.code("communication"), _ctx(connection), APP.base)
    assert str(before.requests[0].headers["x-daily-credit-budget"]) == "2"
    (report,) = before.outputs
    assert report["creditsToday"] == 0 and report["dailyBudget"] == 2 and len(report["days"]) == 30
    assert set(report) == set(_names(usage_module.code("interface")))

    handle = unique_handle("mkb")
    fake_upstream.seed(handle, 3)
    ctx = _ctx(connection, parameters={"handle": handle, "limit": 5, "checkEvery": 30})
    first = run(TRIGGER.code("communication"), ctx, APP.base)  # starts the watch: 1 credit
    assert first.requests[0].body == {"handle": handle, "checkEvery": 30, "limit": 300}
    fake_upstream.follow(handle)
    assert run(TRIGGER.code("communication"), ctx, APP.base).outputs == []  # inside Check every: free

    search_ctx = _ctx(connection, parameters={"handle": handle, "limit": 1})
    run(SEARCH.code("communication"), search_ctx, APP.base)  # the 2nd and last credit
    with pytest.raises(MakeError) as err:
        run(SEARCH.code("communication"), search_ctx, APP.base)
    assert err.value.status == 402 and err.value.type == "InvalidConfigurationError"
    assert "midnight UTC" in err.value.message

    (after,) = run(usage_module.code("communication"), _ctx(connection), APP.base).outputs
    assert (after["creditsToday"], after["budgetLeft"]) == (2, 0)
    (watched,) = [w for w in after["watches"] if w["handle"] == handle]
    assert watched["checkEvery"] == 30 and watched["creditsLast30Days"] == 1


def test_contract_watchlist_trigger_outputs_each_handles_follows_once(make, fake_upstream):
    """`handles` (a Make array): each handle its own watch; the same account followed by two
    watched handles is two bundles (two eventIds), each naming its handle."""
    handles = [unique_handle("mk") for _ in range(3)]
    for handle in handles:
        fake_upstream.seed(handle, 3)
    comm = TRIGGER.code("communication")
    ctx = _ctx(make, parameters={"handles": ["@" + handles[0], *handles[1:]], "limit": 50})
    state = TriggerState.all()
    first = run(comm, ctx, APP.base)
    assert first.requests[0].body == {"handles": ["@" + handles[0], *handles[1:]], "limit": 300}
    assert state.take(first) == []  # starts the three watches
    shared = fake_upstream.follow(handles[0])
    fake_upstream.follow(handles[1], account=shared)
    other = fake_upstream.follow(handles[2])
    events = state.take(run(comm, ctx, APP.base))
    assert sorted((e["id"], e["followedBy"]) for e in events) == sorted(
        [(shared["user"]["id"], handles[0]), (shared["user"]["id"], handles[1]), (other["user"]["id"], handles[2])])
    assert len({e["eventId"] for e in events}) == 3
    assert state.take(run(comm, ctx, APP.base)) == []
    # Both at once is refused by the service, naming the field.
    with pytest.raises(MakeError) as err:
        run(comm, _ctx(make, parameters={"handle": handles[0], "handles": handles[1:], "limit": 5}), APP.base)
    assert (err.value.status, err.value.type) == (400, "DataError") and "handles" in err.value.message.lower()


def test_contract_watchlist_webhook_attach_then_detach_all(make, fake_upstream, make_webhook_url):
    handles = [unique_handle("mk") for _ in range(2)]
    for handle in handles:
        fake_upstream.seed(handle, 2)
    webhook = {"id": 4343, "url": make_webhook_url.url}
    attached = run(WEBHOOK.code("attach"), _ctx(make, parameters={"handles": handles}, webhook=webhook), APP.base)
    assert attached.requests[0].body == {"handles": handles, "targetUrl": make_webhook_url.url}
    assert attached.responses[0].status == 201
    hook_id = attached.data["externalHookId"]
    sub = _get(make, f"/hooks/{hook_id}").json()
    assert sub["handles"] == sorted(handles)
    webhook.update(attached.data)
    detached = run(WEBHOOK.code("detach"), _ctx(make, webhook=webhook), APP.base)
    assert detached.responses[-1].status == 204
    assert all(s["id"] != hook_id and s["handle"] not in handles for s in _get(make, "/hooks").json())
    assert _get(make, f"/hooks/{hook_id}").status_code == 404


# =========================================================================== followed by many (live service)
@pytest.fixture
def crowd_service(database_url, fake_upstream, tmp_path):
    """The service on each test database (SQLite, and PostgreSQL when there is one): the
    followed-by-many modules run against both."""
    service = start_service(database_url, fake_upstream.url, workers=1, threads=8, log_path=tmp_path / "web.log")
    yield service
    stop_service(service)


@pytest.fixture
def crowd_make(crowd_service):
    return {"apiKey": API_KEY, "baseUrl": crowd_service.url + "/v1/make"}


def test_contract_followed_by_many_polling_trigger(crowd_make, fake_upstream):
    """The first run starts watching the handles (what they already follow never counts); an
    account followed by minHandles of them is one bundle, once, naming the handles."""
    handles = [unique_handle("mkc") for _ in range(3)]
    seeded = {handle: fake_upstream.seed(handle, 3) for handle in handles}
    comm, epoch = CROWDS.code("communication"), merge_epoch(CROWDS.code("communication"), CROWDS.code("epoch"))
    ctx = _ctx(crowd_make, parameters={"handles": ["@" + handles[0], *handles[1:]], "minHandles": 2, "withinDays": 7,
                                 "limit": 10})
    first = run(epoch, ctx, APP.base)
    assert first.requests[0].url == crowd_make["baseUrl"] + "/triggers/followed-by-many"
    assert first.requests[0].body == {"handles": ["@" + handles[0], *handles[1:]], "minHandles": 2, "withinDays": 7,
                                      "limit": 300}
    assert first.outputs == []
    state = TriggerState.all()
    # A baseline account of one handle, now followed by another, is one new follow: not a crowd.
    fake_upstream.follow(handles[1], account=seeded[handles[0]][0])
    shared = fake_upstream.follow(handles[0])
    fake_upstream.follow(handles[2], account=shared)
    fake_upstream.follow(handles[1])  # one handle alone: not a crowd
    events = state.take(run(comm, ctx, APP.base))
    assert [e["id"] for e in events] == [str(shared["user"]["id"])]
    (event,) = events
    assert set(event) == set(_interface(CROWDS))
    assert event["event"] == "followed_by_many" and event["eventId"].isdigit()
    assert sorted(event["followedByHandles"]) == sorted([handles[0], handles[2]]) and event["followedByCount"] == 2
    assert state.take(run(comm, ctx, APP.base)) == []  # output once
    fake_upstream.follow(handles[1], account=shared)  # a third handle: the threshold was crossed already
    assert state.take(run(comm, ctx, APP.base)) == []
    # The epoch offers what was found, with label and date.
    (choice,) = run(epoch, ctx, APP.base).outputs
    assert choice == {"label": f"{shared['user']['nickname']} (@{shared['user']['uniqueId']})",
                      "date": event["detectedAt"]}


@pytest.mark.parametrize("params, field", [
    ({"minHandles": 3}, "MinHandles"),  # more than the two handles: never reachable
    ({"withinDays": 91}, "WithinDays"),
])
def test_contract_followed_by_many_bad_input_names_the_field(make, fake_upstream, params, field):
    handles = [unique_handle("mkc") for _ in range(2)]
    with pytest.raises(MakeError) as err:
        run(CROWDS.code("communication"), _ctx(make, parameters={"handles": handles, "limit": 5, **params}), APP.base)
    assert (err.value.status, err.value.type) == (400, "DataError")
    assert err.value.message.startswith(f"{field}: "), err.value.message
    with pytest.raises(MakeError) as err:  # one handle is no crowd
        run(CROWDS.code("communication"), _ctx(make, parameters={"handles": handles[:1], "limit": 5}), APP.base)
    assert err.value.status == 400 and err.value.message.startswith("Handles: "), err.value.message


def test_contract_followed_by_many_instant_trigger_receives_one_event(crowd_make, fake_upstream, crowd_service,
                                                                       make_webhook_url, tmp_path):
    """attach (event followed_by_many) -> the worker refreshes the handles and delivers ONE event
    when the second handle follows the account -> the module outputs it; detach removes it."""
    handles = [unique_handle("mkc") for _ in range(2)]
    for handle in handles:
        fake_upstream.seed(handle, 2)
    webhook = {"id": 4444, "url": make_webhook_url.url}
    # (no checkEvery: a fixed one would keep the handles from being checked again inside it)
    params = {"handles": handles, "minHandles": 2, "withinDays": 3, "minFollowers": 0}
    attached = run(CROWD_WEBHOOK.code("attach"), _ctx(crowd_make, parameters=params, webhook=webhook), APP.base)
    assert attached.requests[0].body == {**params, "targetUrl": make_webhook_url.url, "event": "followed_by_many"}
    assert attached.responses[0].status == 201
    sub = _get(crowd_make, f"/hooks/{attached.data['externalHookId']}").json()
    assert (sub["event"], sub["handles"], sub["filters"]) == ("followed_by_many", sorted(handles), {"minFollowers": 0})

    def follow_by_both():
        account = fake_upstream.follow(handles[0])
        fake_upstream.follow(handles[1], account=account)
        # A trigger call refreshes the same watches at once (the worker also would, every minute).
        trigger_ctx = _ctx(crowd_make, parameters={"handles": handles, "minHandles": 2, "withinDays": 3, "limit": 10})
        run(CROWDS.code("communication"), trigger_ctx, APP.base)
        return account

    account = _with_worker_until_delivered(crowd_service, fake_upstream, tmp_path, make_webhook_url, follow_by_both)
    assert len(make_webhook_url.received) == 1, f"deliveries: {make_webhook_url.received}; see {tmp_path}"
    headers, body = make_webhook_url.received[0]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers)
    bundle = render(CROWD_WEBHOOK.code("communication")["output"], {"body": body})
    assert set(bundle) == set(_interface(CROWDS_INSTANT))
    assert bundle["id"] == str(account["user"]["id"]) and bundle["event"] == "followed_by_many"
    assert sorted(bundle["followedByHandles"]) == sorted(handles) and bundle["followedByCount"] == 2
    webhook.update(attached.data)
    detached = run(CROWD_WEBHOOK.code("detach"), _ctx(crowd_make, webhook=webhook), APP.base)
    assert [(r.method, s.status) for r, s in zip(detached.requests, detached.responses)] == [("GET", 200),
                                                                                            ("DELETE", 204)]
    assert _get(crowd_make, f"/hooks/{attached.data['externalHookId']}").status_code == 404
