from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.crowds import MIN_CROWD_HANDLES, check_min_handles, min_handles_field, within_days_field
from schemas.fields import CheckEvery
from schemas.filters import FilterFields
from schemas.watchlist import WatchlistFields


_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
# What check_target_url accepts, spelled for the OpenAPI document (ECMA 262, no flags): a host
# name or IPv4 address (private ones are refused at subscribe time), an optional port, then
# printable ASCII only. https only unless ALLOW_PRIVATE_WEBHOOK_TARGETS.
TARGET_URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9][A-Za-z0-9.-]*(?::{_PORT})?(?:[/?#][!-~]*)?$"


class SubscriptionCreateSchema(WatchlistFields, FilterFields):
    targetUrl = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=2048), validate.Regexp(TARGET_URL_PATTERN)],
        metadata={"description": "Where each new follow is POSTed (Zapier's bundle.targetUrl, Make's webhook URL). https only."},
    )
    checkEvery = CheckEvery()
    event = fields.String(
        load_default="new_following", validate=validate.OneOf(["new_following", "unfollowed", "followed_by_many"]),
        metadata={"description": "What is delivered: new_following (default), unfollowed (see sweepEvery) or "
                                 "followed_by_many (see minHandles, withinDays)"})
    sweepEvery = fields.Integer(strict=True, validate=validate.Range(min=1, max=168), metadata={
        "description": "event unfollowed: hours between sweeps of the readable list (1 to 168, default 24); "
                       "a sweep costs ceil(accounts / 100) credits, plus 1 from the second sweep on"})
    # event followed_by_many (schemas/crowds.py); defaults applied by the view, so other events
    # can refuse them.
    minHandles = min_handles_field()
    withinDays = within_days_field()

    @validates_schema
    def _crowd_fields(self, data, **kwargs):
        if data.get("event") != "followed_by_many":
            for name in ("minHandles", "withinDays"):
                if name in data:
                    raise ValidationError("only applies to event followed_by_many.", field_name=name)
            return
        if len(data.get("handles") or []) < MIN_CROWD_HANDLES:
            raise ValidationError(f"event followed_by_many needs `handles`, a list of {MIN_CROWD_HANDLES} to 50.",
                                  field_name="handles")
        check_min_handles(data)


class SubscriptionSchema(Schema):
    id = fields.String(required=True)
    handle = fields.String(required=True, metadata={"description": "The handle (a watchlist: its first handle; see handles)"})
    handles = fields.List(fields.String(), metadata={"description": "A watchlist subscription: every handle it watches (one subscription row per handle, all deleted with this id)"})
    targetUrl = fields.String(required=True)
    platform = fields.String(required=True)
    secret = fields.String(metadata={"description": "Standard Webhooks signing secret (whsec_...); only in the answer to a subscribe (201, or 200 when you already had this subscription)"})
    status = fields.String(required=True, metadata={"description": "active, paused (see statusReason)"})
    statusReason = fields.String(allow_none=True, metadata={
        "description": "why a paused subscription is paused; for an active one, a note when DumplingAI's answers "
                       "deviate from its documentation (detection safe mode)"})
    createdAt = fields.String(required=True)
    deliveredCount = fields.Integer()
    failedCount = fields.Integer()
    event = fields.String(metadata={"description": "new_following, unfollowed or followed_by_many"})
    minHandles = fields.Integer(metadata={"description": "event followed_by_many: the crowd's minHandles"})
    withinDays = fields.Integer(metadata={"description": "event followed_by_many: the crowd's withinDays"})
    filters = fields.Dict(allow_none=True, metadata={"description": "The filters stored with the subscription (null: none); subscribing again with other filters replaces them"})
    checkEvery = fields.Raw(allow_none=True, metadata={"description": "The watch's checkEvery: minutes, \"auto\", or null (the service's default)"})


class DeliverySchema(Schema):
    id = fields.String(required=True)
    eventSequence = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"description": "pending, delivered, failed"})
    attempts = fields.Integer(required=True)
    lastStatus = fields.Integer(allow_none=True)
    lastError = fields.String(allow_none=True)
    nextAttemptAt = fields.String(allow_none=True)
    createdAt = fields.String(required=True)
