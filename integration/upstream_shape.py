"""The documented shape of the upstream's 200 body (what we read, not what we serve: it lives
with the client, so `schemas/` depends on `integration`, never the reverse). Anything else is a 502.

The entries are checked by one marshmallow field in a single pass over a type table:
a nested Schema per entry cost ~35 µs each, most of our per-request overhead.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields

# name -> accepted exact types (`type(v) in ...`: True is not an int here). Optional fields may
# also be null or absent.
USER_REQUIRED = {"id": (str, int), "uniqueId": (str,)}
USER_OPTIONAL = {"nickname": (str,), "avatarThumb": (str,), "signature": (str,), "secUid": (str,),
                 "verified": (bool,), "privateAccount": (bool,)}
STATS_OPTIONAL = {"followerCount": (int,), "followingCount": (int,), "heartCount": (int,),
                  "videoCount": (int,), "diggCount": (int,)}


def _check_optional(obj: dict, table: dict, where: str) -> None:
    for name, types in table.items():
        value = obj.get(name)
        if value is not None and type(value) not in types:
            raise ValidationError(f"{where}.{name} has the wrong type")


class UpstreamEntry(fields.Field):
    """One `followingList` entry: `{"user": {...}, "stats": {...}}` as documented."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not dict or type(value.get("user")) is not dict:
            raise ValidationError("entry.user must be an object")
        user, stats = value["user"], value.get("stats")
        for name, types in USER_REQUIRED.items():
            if type(user.get(name)) not in types or user[name] == "":
                raise ValidationError(f"user.{name} is missing or has the wrong type")
        _check_optional(user, USER_OPTIONAL, "user")
        if stats is not None:
            if type(stats) is not dict:
                raise ValidationError("entry.stats must be an object")
            _check_optional(stats, STATS_OPTIONAL, "stats")
        return value


class UpstreamPageSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # new upstream fields must not break us

    followingList = fields.List(UpstreamEntry(), required=True)
    # Cursors may be missing or null: detection then runs in its safe mode (detection.py)
    # rather than failing the whole refresh.
    maxCursor = fields.Integer(load_default=None, allow_none=True, strict=True)
    minCursor = fields.Integer(load_default=None, allow_none=True, strict=True)
    hasMore = fields.Boolean(required=True, truthy={True}, falsy={False})
    total = fields.Integer(allow_none=True)
