from __future__ import annotations

from marshmallow import Schema, fields


class AccountSchema(Schema):
    """One followed account, flat (CONTRACT.md)."""

    id = fields.String(required=True, metadata={"description": "TikTok user id", "example": "6900000000000000001"})
    uniqueId = fields.String(required=True, metadata={"description": "Handle (username)", "example": "khaby.lame"})
    nickname = fields.String(required=True, metadata={"description": "Display name"})
    profileUrl = fields.String(required=True, metadata={"description": "https://www.tiktok.com/@uniqueId"})
    avatarThumb = fields.String(required=True, metadata={"description": "Avatar thumbnail URL"})
    signature = fields.String(required=True, metadata={"description": "Bio"})
    verified = fields.Boolean(required=True)
    privateAccount = fields.Boolean(required=True)
    secUid = fields.String(required=True, metadata={"description": "TikTok secure user id"})
    followerCount = fields.Integer(required=True)
    followingCount = fields.Integer(required=True)
    heartCount = fields.Integer(required=True)
    videoCount = fields.Integer(required=True)
    diggCount = fields.Integer(required=True)


class FollowEventSchema(AccountSchema):
    """A new follow: a trigger item and a webhook body (the same shape)."""

    followedBy = fields.String(required=True, metadata={"description": "The watched handle that followed this account"})
    detectedAt = fields.String(required=True, metadata={"description": "When we detected the follow (ISO 8601, UTC)", "example": "2026-11-25T14:00:00Z"})
    sequence = fields.Integer(
        required=True,
        metadata={"description": "Strictly increasing per watched handle; 0 for the baseline samples Zapier is given on the first poll"},
    )
    eventId = fields.String(required=True, metadata={
        "description": "Unique to this event among all events of your key: what Zapier and Make deduplicate on",
        "example": "1042"})
    event = fields.String(required=True, metadata={"description": "The event type: new_following", "example": "new_following"})
