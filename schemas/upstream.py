"""The documented shape of the upstream's 200 body. Anything else is a 502."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class UpstreamUserSchema(_Lenient):
    id = fields.Raw(required=True)  # documented as a string; numbers are accepted and stringified
    uniqueId = fields.String(required=True)
    nickname = fields.String(allow_none=True)
    avatarThumb = fields.String(allow_none=True)
    signature = fields.String(allow_none=True)
    verified = fields.Boolean(allow_none=True)
    secUid = fields.String(allow_none=True)
    privateAccount = fields.Boolean(allow_none=True)


class UpstreamStatsSchema(_Lenient):
    followerCount = fields.Integer(allow_none=True)
    followingCount = fields.Integer(allow_none=True)
    heartCount = fields.Integer(allow_none=True)
    videoCount = fields.Integer(allow_none=True)
    diggCount = fields.Integer(allow_none=True)


class UpstreamEntrySchema(_Lenient):
    user = fields.Nested(UpstreamUserSchema, required=True)
    stats = fields.Nested(UpstreamStatsSchema, allow_none=True)


class UpstreamPageSchema(_Lenient):
    followingList = fields.List(fields.Nested(UpstreamEntrySchema), required=True)
    maxCursor = fields.Integer(required=True, strict=True)
    minCursor = fields.Integer(required=True, strict=True)
    hasMore = fields.Boolean(required=True)
    total = fields.Integer(allow_none=True)
