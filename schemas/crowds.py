""""Followed by many" (a crowd): the polling trigger's request, its item, and the fields a
`followed_by_many` subscription adds (CONTRACT.md, "Beyond new follows")."""
from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.account import AccountSchema
from schemas.triggers import TriggerRequestSchema
from schemas.watchlist import MAX_HANDLES, Handles

MIN_CROWD_HANDLES = 2
MAX_WITHIN_DAYS = 90
MIN_HANDLES_DEFAULT = 2
WITHIN_DAYS_DEFAULT = 7

CROWD_HANDLES_HELP = (f"The watchlist: {MIN_CROWD_HANDLES} to {MAX_HANDLES} TikTok handles, each in any form `handle` "
                      "accepts; each is its own watch, refreshed and charged as the new-following trigger does "
                      "(1 credit per handle refreshed).")
MIN_HANDLES_HELP = (f"How many of the handles must have followed an account (at least {MIN_CROWD_HANDLES}, at most "
                    f"the number of handles; default {MIN_HANDLES_DEFAULT}).")
WITHIN_DAYS_HELP = (f"Within how many days those follows must fall (1 to {MAX_WITHIN_DAYS}, default "
                    f"{WITHIN_DAYS_DEFAULT}). Only follows detected after a handle was first watched count: the "
                    "accounts a handle already followed then have no known time.")


def crowd_handles_field(**kwargs) -> Handles:
    field = Handles(metadata={"description": CROWD_HANDLES_HELP}, **kwargs)
    field.validators = [validate.Length(min=MIN_CROWD_HANDLES, max=MAX_HANDLES)]
    return field


def min_handles_field(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=MIN_CROWD_HANDLES),
                          metadata={"description": MIN_HANDLES_HELP}, **kwargs)


def within_days_field(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_WITHIN_DAYS),
                          metadata={"description": WITHIN_DAYS_HELP}, **kwargs)


def check_min_handles(data: dict) -> None:
    """`minHandles` larger than the list can never be reached: refused, naming minHandles."""
    handles, wanted = data.get("handles") or [], data.get("minHandles")
    if wanted is not None and handles and wanted > len(handles):
        raise ValidationError(f"must not be larger than the number of handles ({len(handles)}).",
                              field_name="minHandles")


class FollowedByManyTriggerRequestSchema(TriggerRequestSchema):
    class Meta:
        # `handle` (one handle) cannot make a crowd; `afterSequence` compares per-handle
        # sequences, which mean nothing across the crowd's handles (use `since`).
        exclude = ("handle", "afterSequence")

    handles = crowd_handles_field(required=True)
    minHandles = min_handles_field(load_default=MIN_HANDLES_DEFAULT)
    withinDays = within_days_field(load_default=WITHIN_DAYS_DEFAULT)

    def _exactly_one(self, data, **kwargs):
        """Not a hook here (overrides WatchlistFields': `handles` is simply required)."""

    @validates_schema
    def _reachable(self, data, **kwargs):
        check_min_handles(data)


class FollowedByManyEventSchema(AccountSchema):
    """A crowd crossing its threshold: a trigger item and a webhook body (the same shape)."""

    followedByHandles = fields.List(fields.String(), required=True, metadata={
        "description": "The watched handles that followed this account within withinDays, in the order they "
                       "followed it", "example": ["charlidamelio", "khaby.lame"]})
    followedByCount = fields.Integer(required=True, metadata={
        "description": "How many of them (the length of followedByHandles): minHandles when the threshold was crossed",
        "example": 2})
    detectedAt = fields.String(required=True, metadata={
        "description": "When the follow that crossed the threshold was detected (ISO 8601, UTC)",
        "example": "2026-11-25T14:00:00Z"})
    sequence = fields.Integer(required=True, metadata={
        "description": "The crossing follow's handle's journal number (strictly increasing per handle)"})
    eventId = fields.String(required=True, metadata={
        "description": "Unique to this event among all events of your key: what Zapier and Make deduplicate on",
        "example": "1044"})
    event = fields.String(required=True, metadata={"description": "The event type: followed_by_many",
                                                   "example": "followed_by_many"})
