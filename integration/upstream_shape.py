"""The documented shape of the upstream's 200 body (what we read, not what we serve: it lives
with the client, so `schemas/` depends on `integration`, never the reverse). Anything else is a 502.

The entries are checked by one marshmallow field for the whole list, in a single pass over a
type table: a nested Schema per entry cost ~35 µs each, and even a field per entry (fields.List)
cost marshmallow's per-field machinery 30 times a page (0.078 -> 0.052 ms a page of 30,
docs/SCALING.md "The action's overhead").
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


def _check_entry(value) -> None:
    """One `followingList` entry: `{"user": {...}, "stats": {...}}` as documented."""
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


class UpstreamEntries(fields.Field):
    """`followingList`: a list of documented entries (the first bad one refuses the page)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not list:
            raise ValidationError("followingList must be a list")
        for entry in value:
            _check_entry(entry)
        return value


class UpstreamPageSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # new upstream fields must not break us

    followingList = UpstreamEntries(required=True)
    # Cursors may be missing or null: detection then runs in its safe mode (detection.py)
    # rather than failing the whole refresh.
    maxCursor = fields.Integer(load_default=None, allow_none=True, strict=True)
    minCursor = fields.Integer(load_default=None, allow_none=True, strict=True)
    hasMore = fields.Boolean(required=True, truthy={True}, falsy={False})
    total = fields.Integer(allow_none=True)
