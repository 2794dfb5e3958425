"""Webhook subscriptions: Zapier REST hooks and Make instant triggers."""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from integration import errors, subscriptions
from integration.api import Blueprint, Caller, key_required, services
from integration.filters import Filters
from integration.schedule import Wish
from integration.delivery import TargetRefused, check_target_resolves, check_target_url
from schemas.crowds import MIN_HANDLES_DEFAULT, WITHIN_DAYS_DEFAULT
from schemas.hooks import DeliverySchema, SubscriptionCreateSchema, SubscriptionSchema

blp = Blueprint("hooks", __name__, url_prefix="/v1/<platform:platform>/hooks",
                description="Webhook subscriptions: each new follow is POSTed to targetUrl, signed (Standard Webhooks).")


class DeliveryQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(["pending", "delivered", "failed"]))


def _refuse_private_names(target_url: str) -> None:
    """A host name that resolves to a private address is refused now, before any upstream call."""
    allow_private = services().settings.allow_private_webhook_targets
    try:
        check_target_resolves(check_target_url(target_url, allow_private=allow_private), allow_private=allow_private)
    except TargetRefused as exc:
        raise errors.ApiError(400, "invalid_target_url", str(exc), fields={"targetUrl": [str(exc)]}) from None


@blp.route("")
class Hooks(MethodView):
    @blp.arguments(SubscriptionCreateSchema)
    @blp.response(201, SubscriptionSchema, description="Subscribed")
    @blp.alt_response(200, schema=SubscriptionSchema, description="You already had this subscription: it is returned, with its secret")
    @blp.documented_errors(400, 401, 402, 404, 409, 429, 502, 504)
    @key_required
    def post(self, args, platform, caller: Caller):
        """Subscribe: watch the handle and deliver each new follow to targetUrl

        Subscribing again to the same handle and targetUrl returns the existing subscription
        (200), with the filters of this request (they replace the stored ones). An account that
        fails the filters is never delivered. `event: unfollowed` delivers unfollows instead: the
        worker sweeps the readable list at most every `sweepEvery` hours (default 24), each sweep
        costing ceil(accounts / 100) credits, plus 1 from the second sweep on. A key has at most MAX_SUBSCRIPTIONS_PER_KEY subscriptions (409 past it).

        `handles` (a watchlist, 1 to 50) subscribes every handle, one subscription per handle
        (a 50-handle watchlist counts 50 towards the limit), under one `id` and one secret:
        deleting that id deletes them all. The same handles (in any order), event and
        targetUrl again return it (200). Each delivery names its handle (`followedBy`).

        `event: followed_by_many` (with `handles`, 2 to 50, `minHandles`, default 2, and
        `withinDays`, default 7): one delivery per account, when the follow that makes
        `minHandles` of the handles within `withinDays` is detected; the body is the
        followed-by-many trigger's item. Each handle is refreshed by the worker as for new
        follows (1 credit per handle per check) and counts towards the limit."""
        _refuse_private_names(args["targetUrl"])
        options = dict(filters=Filters.from_request(args), wish=Wish(args.get("checkEvery"), caller.budget),
                       event=subscriptions.EventKind(args["event"]), sweep_every=args.get("sweepEvery"))
        if options["event"] is subscriptions.EventKind.FOLLOWED_BY_MANY:
            options["crowd"] = (args.get("minHandles", MIN_HANDLES_DEFAULT),
                                args.get("withinDays", WITHIN_DAYS_DEFAULT))
        if "handles" in args:
            sub, created = subscriptions.create_group(services(), caller.owner, caller.key, platform, args["handles"],
                                                      args["targetUrl"], g.meter, **options)
        else:
            sub, created = subscriptions.create(services(), caller.owner, caller.key, platform, args["handle"],
                                                args["targetUrl"], g.meter, **options)
        return sub, 201 if created else 200

    @blp.response(200, SubscriptionSchema(many=True))
    @blp.documented_errors(401)
    @key_required
    def get(self, platform, caller: Caller):
        """List your subscriptions"""
        return subscriptions.list_for(services(), caller.owner)


@blp.route("/<string:sub_id>")
class Hook(MethodView):
    @blp.response(200, SubscriptionSchema)
    @blp.documented_errors(401, 404)
    @key_required
    def get(self, platform, sub_id, caller: Caller):
        """Read one of your subscriptions"""
        return subscriptions.get(services(), caller.owner, sub_id)

    @blp.response(204)
    @blp.documented_errors(401, 404)
    @key_required
    def delete(self, platform, sub_id, caller: Caller):
        """Unsubscribe"""
        subscriptions.delete(services(), caller.owner, sub_id)


@blp.route("/<string:sub_id>/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliverySchema(many=True))
    @blp.documented_errors(401, 404)
    @key_required
    def get(self, args, platform, sub_id, caller: Caller):
        """Recent deliveries of a subscription (failed ones stay visible after the last retry)"""
        return subscriptions.deliveries(services(), caller.owner, sub_id, args.get("status"))
