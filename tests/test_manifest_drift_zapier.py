"""The Zapier app's field lists cannot drift from the marshmallow schemas.

manifests/zapier/index.js builds every inputField/outputField from
manifests/zapier/fields.json, which manifests/zapier/generate_fields.py generates
from schemas/*.py. This test (no Node needed) proves:

- fields.json is what the generator makes from the current schemas;
- input fields (+ what Zapier itself supplies) == the request schema fields;
- output fields == the answer schema fields (flat account / follow event);
- the app's operation modules build their fields from fields.json.

With Node and manifests/zapier/node_modules present it also compares the loaded
definition itself (the Node suite does the same, and checks the request bodies).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from marshmallow import fields as mfields

from schemas.account import AccountSchema, FollowEventSchema
from schemas.crowds import MIN_CROWD_HANDLES, FollowedByManyEventSchema, FollowedByManyTriggerRequestSchema
from schemas.filters import FilterFields
from schemas.following import CheckRequestSchema, CheckResponseSchema, FollowingRequestSchema, FollowingResponseSchema
from schemas.hooks import SubscriptionCreateSchema
from schemas.fields import CheckEvery
from schemas.triggers import TriggerRequestSchema
from schemas.usage import UsageSchema
from schemas.unfollows import UnfollowedTriggerRequestSchema, UnfollowEventSchema

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "manifests" / "zapier"
FIELDS = json.loads((APP_DIR / "fields.json").read_text(encoding="utf-8"))
OPS = FIELDS["operations"]

FILTERS = set(FilterFields().fields)
CROWD_ONLY = {"minHandles", "withinDays"}  # subscription fields of event followed_by_many only
# Request fields the Zapier app deliberately does not send (Make / plain API only; the hidden
# legacy trigger sends what it always sent).
NOT_FOR_ZAPIER = {"new_followed_account": {"since", "afterSequence"},
                  "new_following": {"since", "afterSequence", "checkEvery", "handles"} | FILTERS,  # legacy: as it always was
                  "new_following_instant": {"event", "sweepEvery"} | CROWD_ONLY,  # a new-follow hook: the default event
                  "new_unfollow": {"since", "afterSequence"},
                  "new_unfollow_instant": {"checkEvery"} | CROWD_ONLY,  # unfollows are swept (sweepEvery)
                  "followed_by_many": {"since"},
                  "followed_by_many_instant": {"handle", "sweepEvery"}}  # a crowd is a watchlist
# Inputs the app requires where the schema, shared with other requests, does not: the hidden
# legacy trigger asks for one handle, as it always did (the schema's `handle` is optional now
# that `handles` may replace it); a followed-by-many hook needs its watchlist.
LEGACY_REQUIRED = {"new_following": {"handle"}, "followed_by_many_instant": {"handles"}}
# Request fields Zapier supplies itself rather than the user.
FROM_ZAPIER = {"new_followed_account": {"limit"}, "new_following": {"limit"}, "new_following_instant": {"targetUrl"},
               "new_unfollow": {"limit"}, "new_unfollow_instant": {"targetUrl", "event"},
               "followed_by_many": {"limit"}, "followed_by_many_instant": {"targetUrl", "event"}}

# CheckEvery (minutes or "auto") is a choice field: Zapier sends the value as a string.
ZAPIER_TYPES = {mfields.Integer: "integer", mfields.Boolean: "boolean", mfields.String: "string", CheckEvery: "string"}


def _generator():
    spec = importlib.util.spec_from_file_location("zapier_generate_fields", APP_DIR / "generate_fields.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keys(items) -> list[str]:
    return [item["key"] for item in items]


def schema_keys(schema) -> list[str]:
    return [field.data_key or name for name, field in schema.fields.items()]


def zapier_type(field) -> str:
    if isinstance(field, mfields.List):  # a Zapier list field of the inner type
        field = field.inner
    for cls, name in ZAPIER_TYPES.items():
        if isinstance(field, cls):
            return name
    raise AssertionError(f"no Zapier type for {field!r}")


def test_fields_json_is_generated_from_current_schemas():
    generated = _generator().render()
    current = (APP_DIR / "fields.json").read_text(encoding="utf-8")
    assert current == generated, (
        "manifests/zapier/fields.json is stale: run "
        "`.venv/bin/python manifests/zapier/generate_fields.py`"
    )


def test_operations_are_the_three_zapier_operations():
    assert set(OPS) == {"list_following", "check_following", "new_followed_account", "new_following",
                        "new_following_instant", "credit_usage", "new_unfollow", "new_unfollow_instant",
                        "followed_by_many", "followed_by_many_instant"}


@pytest.mark.parametrize(
    "op, schema",
    [
        ("list_following", FollowingRequestSchema()),
        ("check_following", CheckRequestSchema()),
        ("new_followed_account", TriggerRequestSchema()),
        ("new_following", TriggerRequestSchema()),
        ("new_following_instant", SubscriptionCreateSchema()),
        ("new_unfollow", UnfollowedTriggerRequestSchema()),
        ("new_unfollow_instant", SubscriptionCreateSchema()),
        ("followed_by_many", FollowedByManyTriggerRequestSchema()),
        ("followed_by_many_instant", SubscriptionCreateSchema()),
    ],
)
def test_input_fields_match_request_schema(op, schema):
    spec = OPS[op]
    inputs = keys(spec["inputFields"])
    from_zapier = FROM_ZAPIER.get(op, set())
    not_sent = NOT_FOR_ZAPIER.get(op, set())

    # What the app sends = what the user enters + what Zapier supplies.
    assert set(spec["requestKeys"]) == set(inputs) | from_zapier
    assert not set(inputs) & from_zapier
    # ... == the request schema's fields, minus the documented Make/API-only ones.
    assert set(spec["requestKeys"]) == set(schema_keys(schema)) - not_sent
    assert not_sent <= set(schema_keys(schema)), "NOT_FOR_ZAPIER names a field the schema no longer has"

    # Every required schema field is asked for (or supplied by Zapier), and the flags agree.
    for name, field in schema.fields.items():
        if field.required:
            assert name in inputs or name in from_zapier, f"{op}: required {name} is not an input"
    for item in spec["inputFields"]:
        field = schema.fields[item["key"]]
        assert item["required"] is (bool(field.required) or item["key"] in LEGACY_REQUIRED.get(op, set())), item["key"]
        assert item["type"] == zapier_type(field), item["key"]
        assert item.get("list", False) is isinstance(field, mfields.List), item["key"]
        assert item["label"] and item["helpText"], item["key"]


def test_action_input_fields_are_exactly_the_following_request_schema():
    assert keys(OPS["list_following"]["inputFields"]) == schema_keys(FollowingRequestSchema())


def test_trigger_output_fields_are_the_follow_event_schema():
    event = schema_keys(FollowEventSchema())
    assert keys(FIELDS["followEvent"]) == event
    assert keys(FIELDS["account"]) == schema_keys(AccountSchema())
    assert set(event) - set(schema_keys(AccountSchema())) == {"followedBy", "detectedAt", "sequence",
                                                               "eventId", "event"}
    for op in ("new_followed_account", "new_following_instant"):
        assert keys(OPS[op]["outputFields"]) == event, op
    # Zapier dedupes the polling trigger on eventId; the hidden legacy one on the account id (default)
    assert [f["key"] for f in OPS["new_followed_account"]["outputFields"] if f.get("primary")] == ["eventId"]
    assert not [f for op in ("new_following", "new_following_instant") for f in OPS[op]["outputFields"] if f.get("primary")]
    schema = FollowEventSchema()
    for item in FIELDS["followEvent"]:
        expected = "datetime" if item["key"] == "detectedAt" else zapier_type(schema.fields[item["key"]])
        assert item["type"] == expected, item["key"]


def test_unfollow_trigger_output_fields_are_the_unfollow_event_schema():
    event = schema_keys(UnfollowEventSchema())
    assert keys(FIELDS["unfollowEvent"]) == event
    for op in ("new_unfollow", "new_unfollow_instant"):
        assert keys(OPS[op]["outputFields"]) == event, op
    assert [f["key"] for f in OPS["new_unfollow"]["outputFields"] if f.get("primary")] == ["eventId"]
    assert not [f for f in OPS["new_unfollow_instant"]["outputFields"] if f.get("primary")]


def test_followed_by_many_output_fields_are_its_event_schema():
    schema = FollowedByManyEventSchema()
    event = schema_keys(schema)
    assert keys(FIELDS["crowdEvent"]) == event
    for op in ("followed_by_many", "followed_by_many_instant"):
        assert keys(OPS[op]["outputFields"]) == event, op
    assert [f["key"] for f in OPS["followed_by_many"]["outputFields"] if f.get("primary")] == ["eventId"]
    assert not [f for f in OPS["followed_by_many_instant"]["outputFields"] if f.get("primary")]
    for item in FIELDS["crowdEvent"]:
        field = schema.fields[item["key"]]
        expected = "datetime" if item["key"] == "detectedAt" else zapier_type(field)
        assert item["type"] == expected, item["key"]
        # a list of plain values (followedByHandles) is Zapier's `list: true` of its type
        assert item.get("list", False) is isinstance(field, mfields.List), item["key"]
    assert {"key": "followedByHandles", "label": "Followed By Handles", "type": "string", "list": True} \
        in FIELDS["crowdEvent"]


@pytest.mark.parametrize("op", ["followed_by_many", "followed_by_many_instant"])
def test_followed_by_many_takes_a_watchlist_and_says_what_it_costs(op):
    from schemas.watchlist import MAX_HANDLES

    defaults = FollowedByManyTriggerRequestSchema().fields
    fields = {item["key"]: item for item in OPS[op]["inputFields"]}
    assert "handle" not in fields and fields["handles"]["required"] and fields["handles"]["list"]
    help_text = fields["handles"]["helpText"]
    assert f"{MIN_CROWD_HANDLES} to {MAX_HANDLES}" in help_text
    assert "1 DumplingAI credit per handle per check" in help_text and "for free" in help_text
    assert "baseline" in help_text and "never" in help_text
    for name in ("minHandles", "withinDays"):  # the trigger's defaults, shown in the Zap editor
        assert fields[name]["default"] == str(defaults[name].load_default), name
        assert not fields[name]["required"], name


def test_action_output_fields_are_the_following_response_schema():
    response = FollowingResponseSchema()
    expected = []
    for name in schema_keys(response):
        if name == "following":  # the accounts, as Zapier line items
            expected += [f"following[]{key}" for key in schema_keys(AccountSchema())]
        else:
            expected.append(name)
    assert keys(OPS["list_following"]["outputFields"]) == expected


def test_check_output_fields_are_the_check_response_schema():
    expected = []
    for name in schema_keys(CheckResponseSchema()):
        if name == "account":  # Zapier flattens the nested account as account__key
            expected += [f"account__{key}" for key in schema_keys(AccountSchema())]
        else:
            expected.append(name)
    assert keys(OPS["check_following"]["outputFields"]) == expected


def test_credit_usage_output_fields_are_the_usage_schema():
    expected = []
    for name, field in UsageSchema().fields.items():
        if isinstance(field, mfields.List):  # days[] and watches[]: line items
            expected += [f"{name}[]{key}" for key in schema_keys(field.inner.schema)]
        else:
            expected.append(name)
    assert keys(OPS["credit_usage"]["outputFields"]) == expected
    assert OPS["credit_usage"]["inputFields"] == [] and OPS["credit_usage"]["requestKeys"] == []


def test_check_every_is_a_choice_with_its_monthly_cost():
    for op in ("new_followed_account", "new_following_instant"):
        (field,) = [f for f in OPS[op]["inputFields"] if f["key"] == "checkEvery"]
        labels = {c["value"]: c["label"] for c in field["choices"]}
        assert labels["15"] == "every 15 minutes: about 2,900 credits a month per handle"
        assert labels["1"].startswith("every minute: about 43,000 credits")
        assert labels["1440"].startswith("once a day: about 30 credits")
        assert "auto" in labels
        for value in labels:  # every choice is a value the service accepts
            assert CheckEvery().deserialize(value) in ("auto", int(value) if value.isdigit() else None)
    instant = [f for f in OPS["new_following_instant"]["inputFields"] if f["key"] == "checkEvery"][0]
    assert instant["default"] == "auto"


def test_every_output_field_has_a_label():
    for op, spec in OPS.items():
        for item in spec["outputFields"]:
            assert item.get("label"), f"{op}.{item['key']}"


@pytest.mark.parametrize(
    "path, key, key_expr",
    [
        ("searches/list_following.js", "list_following", "KEY"),
        ("searches/check_following.js", "check_following", "KEY"),
        ("triggers/new_following.js", "new_followed_account", "key"),
        ("triggers/new_following.js", "new_following", "key"),
        ("triggers/new_following_instant.js", "new_following_instant", "KEY"),
        ("searches/credit_usage.js", "credit_usage", "KEY"),
        ("triggers/new_unfollow.js", "new_unfollow", "KEY"),
        ("triggers/new_unfollow_instant.js", "new_unfollow_instant", "KEY"),
        ("triggers/followed_by_many.js", "followed_by_many", "KEY"),
        ("triggers/followed_by_many_instant.js", "followed_by_many_instant", "KEY"),
    ],
)
def test_operation_modules_build_fields_from_fields_json(path, key, key_expr):
    source = (APP_DIR / path).read_text(encoding="utf-8")
    if key_expr == "KEY":
        assert re.search(rf"const KEY = '{key}';", source), path
    else:  # a factory: trigger('<key>', ...)
        assert re.search(rf"trigger\('{key}'", source), path
    if re.search(r"\b(pollingTrigger|hookTrigger)\(KEY\b", source):  # built by lib/triggers.js
        source, key_expr = (APP_DIR / "lib" / "triggers.js").read_text(encoding="utf-8"), "key"
    assert f"inputFields: inputFields({key_expr})" in source, path
    assert f"outputFields: outputFields({key_expr})" in source, path
    assert "require('../lib/fields')" in source or "require('./fields')" in source, path
    lib = (APP_DIR / "lib" / "fields.js").read_text(encoding="utf-8")
    assert "require('../fields.json')" in lib


def test_loaded_definition_matches_fields_json_when_node_is_available():
    node = shutil.which("node")
    if not node or not (APP_DIR / "node_modules" / "zapier-platform-core").is_dir():
        pytest.skip("Node or manifests/zapier/node_modules missing: the static checks above still ran")
    script = (
        "const App = require('./index');"
        "const out = {};"
        "for (const t of ['triggers','creates','searches'])"
        "  for (const [k, op] of Object.entries(App[t] || {}))"
        "    out[k] = {inputFields: op.operation.inputFields, outputFields: op.operation.outputFields};"
        "process.stdout.write(JSON.stringify(out));"
    )
    done = subprocess.run([node, "-e", script], cwd=APP_DIR, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NODE_ENV": "test"})
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert set(loaded) == set(OPS)
    for op, spec in OPS.items():
        assert loaded[op]["inputFields"] == spec["inputFields"], op
        assert loaded[op]["outputFields"] == spec["outputFields"], op


@pytest.mark.parametrize("op", ["new_followed_account", "new_following_instant", "new_unfollow", "new_unfollow_instant"])
def test_every_trigger_offers_one_handle_or_a_watchlist(op):
    from schemas.watchlist import MAX_HANDLES

    fields = {item["key"]: item for item in OPS[op]["inputFields"]}
    assert fields["handles"]["list"] is True and not fields["handles"]["required"]
    assert not fields["handle"]["required"]
    assert {"handle", "handles"} <= set(OPS[op]["requestKeys"])
    for key in ("handle", "handles"):
        assert "one handle, or a list" in fields[key]["helpText"].lower(), key
    assert str(MAX_HANDLES) in fields["handles"]["helpText"]
