from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.account import AccountSchema
from schemas.fields import MAX_INT64, Handle

MAX_COUNT = 100
MAX_LIMIT = 1000


class FollowingRequestSchema(Schema):
    handle = Handle(required=True)
    count = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_COUNT),
        metadata={"description": "Accounts per upstream page (the upstream's own default when absent)"},
    )
    minTime = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=MAX_INT64),
        metadata={"description": "Start after this cursor: the `nextMinTime` of a previous answer"},
    )
    limit = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": "Collect up to this many accounts across pages (one page when absent). Each page costs 1 credit."},
    )


class FollowingResponseSchema(Schema):
    handle = fields.String(required=True)
    following = fields.List(fields.Nested(AccountSchema), required=True)
    count = fields.Integer(required=True, metadata={"description": "Accounts in `following`"})
    total = fields.Integer(allow_none=True, metadata={"description": "Approximate number of accounts the handle follows"})
    hasMore = fields.Boolean(required=True)
    nextMinTime = fields.Integer(allow_none=True, required=True, metadata={"description": "Pass as `minTime` for the next accounts; null at the end"})
    pages = fields.Integer(required=True, metadata={"description": "Upstream pages read (credits spent)"})
