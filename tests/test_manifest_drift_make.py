"""The Make app's parameters and interfaces match the marshmallow schemas the service
validates and answers with (schemas/*.py), compared directly."""
from __future__ import annotations

from pathlib import Path

import pytest
from marshmallow import fields, validate

from schemas.account import AccountSchema, FollowEventSchema
from schemas.crowds import FollowedByManyEventSchema, FollowedByManyTriggerRequestSchema
from schemas.filters import FilterFields
from schemas.following import CheckRequestSchema, CheckResponseSchema, FollowingRequestSchema
from schemas.hooks import SubscriptionCreateSchema
from schemas.triggers import MAX_ITEMS, TriggerRequestSchema
from schemas.unfollows import UnfollowedTriggerRequestSchema, UnfollowEventSchema
from tests.make_iml import MakeApp

APP = MakeApp(Path(__file__).resolve().parents[1] / "manifests" / "make")
SEARCH = APP.module("listFollowing")
TRIGGER = APP.module("watchFollowEvents")
LEGACY_TRIGGER = APP.module("watchNewFollowing")
CHECK = APP.module("checkFollowing")
FILTERS = set(FilterFields().fields)
INSTANT = APP.module("watchNewFollowingInstant")
WEBHOOK = APP.webhook("newFollowing")
UNFOLLOWS = APP.module("watchUnfollows")
UNFOLLOWS_INSTANT = APP.module("watchUnfollowsInstant")
UNFOLLOW_WEBHOOK = APP.webhook("unfollowed")
UNFOLLOW_ONLY = {"event", "sweepEvery"}  # a new-follow subscription sends the default event
CROWDS = APP.module("watchFollowedByMany")
CROWDS_INSTANT = APP.module("watchFollowedByManyInstant")
CROWD_WEBHOOK = APP.webhook("followedByMany")
CROWD_ONLY = {"minHandles", "withinDays"}  # subscription fields of event followed_by_many only

# Request fields the modules do not show as parameters, and why.
SEARCH_ONLY_VIA_PAGINATION = {"minTime"}            # set from `nextMinTime` by the pagination directive
SEARCH_CHOSEN_BY_THE_SERVICE = {"count"}  # the service asks min(remaining, upstream max) per page
TRIGGER_KEPT_BY_MAKE = {"since", "afterSequence"}   # Make keeps its own position (date + sequence)


def _params(module) -> dict[str, dict]:
    params = (module.code("staticParams") or []) + (module.code("mappableParams") or [])
    return {p["name"]: p for p in params}


def _make_type(field: fields.Field, name: str) -> set[str]:
    if isinstance(field, fields.List):
        return {"array"}
    if isinstance(field, fields.Nested):
        return {"collection"}
    if isinstance(field, fields.Boolean):
        return {"boolean"}
    if isinstance(field, fields.Integer):
        return {"uinteger", "integer", "number"}
    if isinstance(field, (fields.DateTime, fields.AwareDateTime)) or name.endswith("At"):
        return {"date"}
    if name.endswith("Url") or name == "avatarThumb":
        return {"url"}
    return {"text"}


def _range(field: fields.Field) -> tuple[int | None, int | None]:
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            return validator.min, validator.max
    return None, None


# Every module with an output (interface and samples) and the schema of its items.
OUTPUTS = [(SEARCH, AccountSchema), (TRIGGER, FollowEventSchema), (LEGACY_TRIGGER, FollowEventSchema),
           (INSTANT, FollowEventSchema), (CHECK, CheckResponseSchema), (UNFOLLOWS, UnfollowEventSchema),
           (UNFOLLOWS_INSTANT, UnfollowEventSchema), (CROWDS, FollowedByManyEventSchema),
           (CROWDS_INSTANT, FollowedByManyEventSchema)]


@pytest.mark.parametrize("module, schema", OUTPUTS, ids=lambda v: getattr(v, "name", ""))
def test_interface_matches_schema(module, schema):
    interface = module.code("interface")
    declared = schema().fields
    assert [i["name"] for i in interface] == list(declared), "same fields, same order"
    for item in interface:
        assert item["type"] in _make_type(declared[item["name"]], item["name"]), item
        assert item.get("label")
        if item["type"] == "collection":  # the nested account, field by field
            nested = declared[item["name"]].schema.fields
            assert [i["name"] for i in item["spec"]] == list(nested)
            for sub in item["spec"]:
                assert sub["type"] in _make_type(nested[sub["name"]], sub["name"]), sub


@pytest.mark.parametrize("module, schema", OUTPUTS, ids=lambda v: getattr(v, "name", ""))
def test_samples_are_valid_items(module, schema):
    sample = module.code("samples")
    assert schema().validate(sample) == {}
    assert list(sample) == [i["name"] for i in module.code("interface")]


def _check_param(param: dict, field: fields.Field, *, required: bool | None = None):
    assert bool(param.get("required")) == (field.required if required is None else required), param["name"]
    assert param["type"] in _make_type(field, param["name"]), param["name"]
    low, high = _range(field)
    if low is not None or high is not None:
        expected = {key: value for key, value in (("min", low), ("max", high)) if value is not None}
        assert param["validate"] == expected, param["name"]
    if "default" in param and high is not None:
        assert low <= param["default"] <= high


def test_search_parameters_match_following_request():
    declared = FollowingRequestSchema().fields
    params = _params(SEARCH)
    assert set(params) == set(declared) - SEARCH_ONLY_VIA_PAGINATION - SEARCH_CHOSEN_BY_THE_SERVICE
    for name, param in params.items():
        _check_param(param, declared[name])
    comm = SEARCH.code("communication")
    assert set(comm["body"]) == set(params)
    assert set(comm["pagination"]["body"]) == set(declared) - SEARCH_CHOSEN_BY_THE_SERVICE
    assert comm["body"]["handle"] == "{{parameters.handle}}"
    # An empty Limit asks for the most one call may return (the schema's maximum).
    assert comm["body"]["limit"] == f"{{{{ifempty(parameters.limit; {_range(declared['limit'])[1]})}}}}"


def test_check_parameters_match_check_request():
    declared = CheckRequestSchema().fields
    params = _params(CHECK)
    assert set(params) == set(declared) == set(CHECK.code("communication")["body"])
    for name, param in params.items():
        _check_param(param, declared[name])


def test_legacy_trigger_sends_what_it_always_sent():
    assert set(_params(LEGACY_TRIGGER)) == {"handle", "limit"}
    assert set(LEGACY_TRIGGER.code("communication")["body"]) == {"handle", "limit"}


def test_trigger_parameters_match_trigger_request():
    declared = TriggerRequestSchema().fields
    params = _params(TRIGGER)
    assert set(params) == set(declared) - TRIGGER_KEPT_BY_MAKE
    for name in FILTERS:
        _check_param(params[name], declared[name])
    assert {k: v for k, v in TRIGGER.code("communication")["body"].items() if k in FILTERS} == {
        name: f"{{{{parameters.{name}}}}}" for name in FILTERS}
    _check_param(params["handle"], declared["handle"])
    # `limit` is the module's Limit (bundles per run); the request always asks for the most.
    _check_param(params["limit"], declared["limit"], required=True)
    for directive in (TRIGGER.code("communication"), TRIGGER.code("epoch")):
        assert set(directive["body"]) <= set(declared)
        assert directive["body"]["limit"] == MAX_ITEMS


def test_webhook_matches_subscription_create():
    declared = SubscriptionCreateSchema().fields
    params = {p["name"]: p for p in WEBHOOK.code("params")}
    body = WEBHOOK.code("attach")["body"]
    assert set(body) == set(declared) - UNFOLLOW_ONLY - CROWD_ONLY
    assert set(params) == set(declared) - {"targetUrl"} - UNFOLLOW_ONLY - CROWD_ONLY  # targetUrl is Make's webhook URL
    assert body["targetUrl"] == "{{webhook.url}}"
    for name in {"handle"} | FILTERS:
        _check_param(params[name], declared[name])
    assert INSTANT.code("staticParams") == []


def test_check_every_is_a_choice_of_values_the_service_accepts_with_their_monthly_cost():
    from schemas.fields import CheckEvery

    trigger = _params(TRIGGER)["checkEvery"]
    hook = {p["name"]: p for p in WEBHOOK.code("params")}["checkEvery"]
    assert hook["default"] == "auto" and "default" not in trigger
    for param in (trigger, hook):
        assert param["type"] == "select" and not param.get("required")
        labels = {o["value"]: o["label"] for o in param["options"]}
        assert labels[15] == "every 15 minutes: about 2,900 credits a month per handle"
        for value in labels:
            assert CheckEvery().deserialize(value) == value
    assert TRIGGER.code("communication")["body"]["checkEvery"] == "{{parameters.checkEvery}}"
    assert WEBHOOK.code("attach")["body"]["checkEvery"] == "{{parameters.checkEvery}}"


def test_credit_usage_interface_matches_usage_schema():
    from schemas.usage import UsageSchema

    module = APP.module("getCreditUsage")
    interface = {i["name"]: i for i in module.code("interface")}
    declared = UsageSchema().fields
    assert list(interface) == list(declared)
    for name, field in declared.items():
        if isinstance(field, fields.List):
            assert interface[name]["type"] == "array"
            assert [s["name"] for s in interface[name]["spec"]] == list(field.inner.schema.fields)
    assert UsageSchema().validate(module.code("samples")) == {}
    assert module.code("communication")["url"] == "/usage" and module.code("communication")["method"] == "GET"


def test_unfollow_trigger_parameters_match_its_request():
    declared = UnfollowedTriggerRequestSchema().fields
    params = _params(UNFOLLOWS)
    assert set(params) == set(declared) - TRIGGER_KEPT_BY_MAKE
    for name in FILTERS | {"handle", "sweepEvery"}:
        _check_param(params[name], declared[name])
    assert "credit" in params["sweepEvery"]["help"] and "credit" in UNFOLLOWS.meta["description"]
    for directive in (UNFOLLOWS.code("communication"), UNFOLLOWS.code("epoch")):
        assert set(directive["body"]) <= set(declared)
        assert directive["body"]["limit"] == MAX_ITEMS
        assert directive["body"]["sweepEvery"] == "{{parameters.sweepEvery}}"
        assert directive["url"] == "/triggers/unfollowed"


def test_unfollow_webhook_subscribes_for_unfollows():
    declared = SubscriptionCreateSchema().fields
    params = {p["name"]: p for p in UNFOLLOW_WEBHOOK.code("params")}
    body = UNFOLLOW_WEBHOOK.code("attach")["body"]
    # checkEvery paces new-follow checks; an unfollow subscription is paced by sweepEvery.
    assert set(body) == set(declared) - {"checkEvery"} - CROWD_ONLY
    assert body["event"] == "unfollowed" and body["targetUrl"] == "{{webhook.url}}"
    assert set(params) == set(declared) - {"targetUrl", "event", "checkEvery"} - CROWD_ONLY
    for name in {"handle", "sweepEvery"} | FILTERS:
        _check_param(params[name], declared[name])
    assert UNFOLLOWS_INSTANT.meta["webhook"] == "unfollowed"
    assert UNFOLLOWS_INSTANT.code("staticParams") == []


@pytest.mark.parametrize("params, bodies", [
    (lambda: _params(TRIGGER), lambda: [TRIGGER.code("communication"), TRIGGER.code("epoch")]),
    (lambda: _params(UNFOLLOWS), lambda: [UNFOLLOWS.code("communication"), UNFOLLOWS.code("epoch")]),
    (lambda: {p["name"]: p for p in WEBHOOK.code("params")}, lambda: [WEBHOOK.code("attach")]),
    (lambda: {p["name"]: p for p in UNFOLLOW_WEBHOOK.code("params")}, lambda: [UNFOLLOW_WEBHOOK.code("attach")]),
])
def test_every_trigger_takes_one_handle_or_a_watchlist_array(params, bodies):
    from schemas.watchlist import MAX_HANDLES

    handles, handle = params()["handles"], params()["handle"]
    assert handles["type"] == "array" and handles["spec"]["type"] == "text"
    assert handles["validate"] == {"minItems": 1, "maxItems": MAX_HANDLES}
    assert not handles.get("required") and not handle.get("required")
    for body in bodies():
        assert body["body"]["handles"] == "{{parameters.handles}}"
        assert body["body"]["handle"] == "{{parameters.handle}}"


def _check_watchlist(param: dict, field: fields.Field):
    """A Make array of text, required here, with the schema's length bounds."""
    (length,) = [v for v in field.validators if isinstance(v, validate.Length)]
    assert param["type"] == "array" and param["spec"]["type"] == "text" and param["required"] is True
    assert param["validate"] == {"minItems": length.min, "maxItems": length.max}


def _crowd_help(params: dict) -> None:
    """The help says what it costs and that baseline follows do not count."""
    text = params["handles"]["help"]
    assert "1 DumplingAI credit per handle per check" in text and "baseline" in text and "never" in text


def test_followed_by_many_interface_lists_the_handles_as_an_array_of_text():
    for module in (CROWDS, CROWDS_INSTANT):
        (handles,) = [i for i in module.code("interface") if i["name"] == "followedByHandles"]
        assert handles["type"] == "array" and handles["spec"]["type"] == "text"
        sample = module.code("samples")
        assert sample["followedByCount"] == len(sample["followedByHandles"]) >= 2
        assert sample["event"] == "followed_by_many"
    assert CROWDS.code("samples") == CROWDS_INSTANT.code("samples")


def test_followed_by_many_trigger_parameters_match_its_request():
    declared = FollowedByManyTriggerRequestSchema().fields
    params = _params(CROWDS)
    assert set(params) == set(declared) - {"since"}  # Make keeps its own position (date + eventId)
    for name in FILTERS | {"minHandles", "withinDays"}:
        _check_param(params[name], declared[name])
    _check_watchlist(params["handles"], declared["handles"])
    for name in ("minHandles", "withinDays"):  # the service's defaults, shown in the scenario editor
        assert params[name]["default"] == declared[name].load_default, name
    _check_param(params["limit"], declared["limit"], required=True)
    _crowd_help(params)
    assert "credit" in CROWDS.meta["description"] and "never counts" in CROWDS.meta["description"]
    for directive in (CROWDS.code("communication"), CROWDS.code("epoch")):
        assert directive["url"] == "/triggers/followed-by-many"
        assert set(directive["body"]) == set(params)
        assert directive["body"]["limit"] == MAX_ITEMS
        assert {k: v for k, v in directive["body"].items() if k != "limit"} == {
            name: f"{{{{parameters.{name}}}}}" for name in params if name != "limit"}


def test_followed_by_many_webhook_subscribes_for_the_crowd():
    declared = SubscriptionCreateSchema().fields
    params = {p["name"]: p for p in CROWD_WEBHOOK.code("params")}
    body = CROWD_WEBHOOK.code("attach")["body"]
    # a crowd is a watchlist (no `handle`); it is paced by checkEvery, not sweeps
    assert set(body) == set(declared) - {"handle", "sweepEvery"}
    assert body["event"] == "followed_by_many" and body["targetUrl"] == "{{webhook.url}}"
    assert set(params) == set(declared) - {"targetUrl", "event", "handle", "sweepEvery"}
    for name in FILTERS | CROWD_ONLY:
        _check_param(params[name], declared[name])
    _check_watchlist(params["handles"], FollowedByManyTriggerRequestSchema().fields["handles"])
    defaults = FollowedByManyTriggerRequestSchema().fields
    for name in CROWD_ONLY:
        assert params[name]["default"] == defaults[name].load_default, name
    assert params["checkEvery"]["default"] == "auto"
    _crowd_help(params)
    assert CROWDS_INSTANT.meta["webhook"] == "followedByMany" and CROWDS_INSTANT.meta["moduleType"] == "instant_trigger"
    assert CROWDS_INSTANT.code("staticParams") == []
    assert CROWD_WEBHOOK.code("communication") == {"output": "{{body}}"}
