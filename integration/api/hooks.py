"""Webhook subscriptions: Zapier REST hooks and Make instant triggers."""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from integration.api import Blueprint
from marshmallow import Schema, fields, validate

from integration import subscriptions
from integration.api import api_key, services
from integration.api.platform_routes import documented_errors
from schemas.hooks import DeliverySchema, SubscriptionCreateSchema, SubscriptionSchema

blp = Blueprint("hooks", __name__, url_prefix="/v1/<platform:platform>/hooks",
                description="Webhook subscriptions: each new follow is POSTed to targetUrl, signed (Standard Webhooks).")


class DeliveryQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(["pending", "delivered", "failed"]))


@blp.route("")
class Hooks(MethodView):
    @blp.arguments(SubscriptionCreateSchema)
    @blp.response(201, SubscriptionSchema, description="Subscribed")
    @blp.alt_response(200, schema=SubscriptionSchema, description="You already had this subscription: it is returned, with its secret")
    @documented_errors(400, 401, 402, 404, 409, 429, 502, 504)
    def post(self, args, platform):
        """Subscribe: watch the handle and deliver each new follow to targetUrl

        Subscribing again to the same handle and targetUrl returns the existing subscription
        (200). A key has at most MAX_SUBSCRIPTIONS_PER_KEY subscriptions (409 past it)."""
        key = api_key()
        sub, created = subscriptions.create(services(), g.owner_hash, key, platform, args["handle"],
                                            args["targetUrl"], g.meter)
        return sub, 201 if created else 200

    @blp.response(200, SubscriptionSchema(many=True))
    @documented_errors(401)
    def get(self, platform):
        """List your subscriptions"""
        api_key()
        return subscriptions.list_for(services(), g.owner_hash)


@blp.route("/<string:sub_id>")
class Hook(MethodView):
    @blp.response(200, SubscriptionSchema)
    @documented_errors(401, 404)
    def get(self, platform, sub_id):
        """Read one of your subscriptions"""
        api_key()
        return subscriptions.get(services(), g.owner_hash, sub_id)

    @blp.response(204)
    @documented_errors(401, 404)
    def delete(self, platform, sub_id):
        """Unsubscribe"""
        api_key()
        subscriptions.delete(services(), g.owner_hash, sub_id)


@blp.route("/<string:sub_id>/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliverySchema(many=True))
    @documented_errors(401, 404)
    def get(self, args, platform, sub_id):
        """Recent deliveries of a subscription (failed ones stay visible after the last retry)"""
        api_key()
        return subscriptions.deliveries(services(), g.owner_hash, sub_id, args.get("status"))
