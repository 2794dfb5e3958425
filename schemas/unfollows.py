"""Unfollow detection: the polling trigger's request and item (CONTRACT.md, "Beyond new follows")."""
from __future__ import annotations

from marshmallow import fields, validate

from schemas.account import AccountSchema
from schemas.triggers import TriggerRequestSchema

SWEEP_EVERY_HELP = ("Hours between unfollow sweeps (1 to 168, default 24). A sweep reads the whole readable "
                    "following list: ceil(accounts / 100) credits, plus 1 from the second sweep on; the first "
                    "sweep only records the list. Unfollows are announced at most this late; those among the newest "
                    "accounts, which every refresh reads anyway, sooner and at no extra credit.")


def sweep_every_field() -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=168),
                          metadata={"description": SWEEP_EVERY_HELP})


class UnfollowedTriggerRequestSchema(TriggerRequestSchema):
    class Meta:
        exclude = ("checkEvery",)  # unfollows are found by sweeps: sweepEvery sets their pace

    sweepEvery = sweep_every_field()


class UnfollowEventSchema(AccountSchema):
    """An unfollow: a trigger item and a webhook body (the same shape); the account as last seen."""

    unfollowedBy = fields.String(required=True, metadata={"description": "The watched handle that stopped following this account"})
    detectedAt = fields.String(required=True, metadata={"description": "When a sweep noticed the unfollow (ISO 8601, UTC); the unfollow happened since the sweep before", "example": "2026-11-25T14:00:00Z"})
    sequence = fields.Integer(required=True, metadata={"description": "Strictly increasing per watched handle (shared with its new follows)"})
    eventId = fields.String(required=True, metadata={
        "description": "Unique to this event among all events of your key: what Zapier and Make deduplicate on",
        "example": "1043"})
    event = fields.String(required=True, metadata={"description": "The event type: unfollowed", "example": "unfollowed"})
