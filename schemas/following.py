from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate

from schemas.account import AccountSchema
from integration.handles import HANDLE_PATTERN, MAX_HANDLE_LENGTH, InvalidHandle, normalize_handle
from schemas.fields import MAX_INT64, Handle
from schemas.filters import FilterFields

MAX_COUNT = 100
MAX_LIMIT = 1000


class FollowingRequestSchema(FilterFields):
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
    count = fields.Integer(required=True, metadata={"description": "Accounts in `following` (those that passed the filters)"})
    total = fields.Integer(allow_none=True, metadata={"description": "Approximate number of accounts the handle follows"})
    hasMore = fields.Boolean(required=True)
    nextMinTime = fields.Integer(allow_none=True, required=True, metadata={"description": "Pass as `minTime` for the next accounts; null at the end"})
    pages = fields.Integer(required=True, metadata={"description": "Upstream pages read (credits spent)"})


MAX_USER_ID_DIGITS = 20  # TikTok user ids are 64-bit integers
TARGET_PATTERN = rf"(?:{HANDLE_PATTERN})|(?:^[ \t]*[0-9]{{1,{MAX_USER_ID_DIGITS}}}[ \t]*$)"


class Target(fields.String):
    """The account looked for: a handle in any accepted form, or a numeric TikTok user id
    (digits only). Deserializes to the normalized username or the id, both matched."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if re.fullmatch(rf"[0-9]{{1,{MAX_USER_ID_DIGITS}}}", text.strip(" \t")):
            return text.strip(" \t")
        try:
            return normalize_handle(text)
        except InvalidHandle as exc:
            raise ValidationError(f"{exc} Or give the account's numeric TikTok user id.") from exc


class CheckRequestSchema(Schema):
    handle = Handle(required=True, metadata={"description": "The account whose following list is read: `name`, `@name` or a profile URL."})
    target = Target(
        required=True, validate=validate.Length(min=1, max=MAX_HANDLE_LENGTH),
        metadata={"description": "The account looked for: `name`, `@name`, a profile URL, or a numeric TikTok user id",
                  "example": "khaby.lame", "pattern": TARGET_PATTERN})


class CheckResponseSchema(Schema):
    follows = fields.Boolean(required=True, metadata={"description": "True when `target` was found in the list"})
    account = fields.Nested(AccountSchema, allow_none=True, required=True,
                            metadata={"description": "The followed account when found, else null"})
    complete = fields.Boolean(required=True, metadata={
        "description": "False when a 'no' covers only the part of the list that could be read (page cap, time budget, or the depth the list can be read to)"})
    pagesRead = fields.Integer(required=True, metadata={"description": "Upstream pages read (credits spent)"})
