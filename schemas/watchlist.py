"""Watchlists: `handles` (1 to 50) instead of `handle`, on every trigger and subscription
(CONTRACT.md, "Beyond new follows")."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.fields import Handle

MAX_HANDLES = 50

HANDLE_HELP = ("One TikTok handle (`name`, `@name` or a profile URL). Send `handle` or `handles`, not both.")
HANDLES_HELP = (f"A watchlist: 1 to {MAX_HANDLES} TikTok handles, each in any form `handle` accepts; each is "
                "its own watch (refreshed and charged as a single handle is). Items from all handles are merged "
                "newest first, each naming its handle. Send `handle` or `handles`, not both.")


class Handles(fields.List):
    """A list of handles, normalized; two spellings of one handle are a duplicate."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault("description", HANDLES_HELP)
        super().__init__(Handle(), validate=validate.Length(min=1, max=MAX_HANDLES), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        handles = super()._deserialize(value, attr, data, **kwargs)
        seen: set[str] = set()
        for handle in handles:
            if handle in seen:
                raise ValidationError(f"'{handle}' is listed twice (handles are compared once normalized).")
            seen.add(handle)
        return handles


class WatchlistFields(Schema):
    """Mixed into a trigger or subscription request: exactly one of `handle`, `handles`.
    After loading, `handles` always holds the list (one handle is a list of one) and
    `watchlist` says whether the caller sent a list."""

    handle = Handle(metadata={"description": HANDLE_HELP, "example": "charlidamelio"})
    handles = Handles()

    @validates_schema
    def _exactly_one(self, data, **kwargs):
        if ("handle" in data) == ("handles" in data):
            both = "handle" in data
            name = "handles" if both else "handle"
            raise ValidationError("Send either `handle` (one handle) or `handles` (a list of 1 to "
                                  f"{MAX_HANDLES}), {'not both' if both else 'one of them is required'}.",
                                  field_name=name)
